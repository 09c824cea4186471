"""Dagster resources: thin wrappers that open the plain-Python services for a run."""

from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field, PrivateAttr

from batch_pipeline import settings
from batch_pipeline.batch.offline import OfflineAnalyser, OfflineWorkers
from batch_pipeline.defs.config_classes import config_class
from batch_pipeline.defs.executor import runs_steps_in_its_own_process
from batch_pipeline.llm.options import LlmOptions, LlmSettings
from batch_pipeline.store import DocumentStore

if TYPE_CHECKING:
    from batch_pipeline.llm.provider import LlmProvider

UNFINISHED_NOTE = "the run ended before this document was analysed; resume run {run_id}"


class DocumentStoreResource(dg.ConfigurableResource):
    """The document store (documents and analysis results), opened once per run. Where it lives is
    the deployment's choice ($BATCH_PIPELINE_DATABASE_URL, else the data folder), not run config's."""

    _store: DocumentStore | None = PrivateAttr(default=None)

    _ends_with_run_id: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._store = DocumentStore(settings.database_url())
        self._store.create_schema()
        if context.run and runs_steps_in_its_own_process(context.run.run_config):
            self._ends_with_run_id = context.run.run_id

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._store is None:
            return
        try:
            # In-process, resources end with the run: a document still pending now will not be
            # analysed by it (the run was stopped between steps, or failed). With a process per step
            # other steps may still be analysing; batch_failure_sensor marks a failed run's instead.
            if run_id := self._ends_with_run_id:
                self._store.mark_interrupted(run_id, UNFINISHED_NOTE.format(run_id=run_id))
        finally:
            self._store.close()

    @property
    def store(self) -> DocumentStore:
        if self._store is None:
            raise RuntimeError("DocumentStoreResource used outside a run")
        return self._store


class OfflineAnalysisResource(dg.ConfigurableResource):
    """Worker processes for the offline analysers (ai_model: local), started on first use in a run."""

    workers: int | None = Field(default=None, description="Worker processes. Unset: one per CPU core.")
    _workers: OfflineWorkers | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._workers = OfflineWorkers(self.workers)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._workers is not None:
            self._workers.close()

    def analyser(self, timeout_seconds: float) -> OfflineAnalyser:
        if self._workers is None:
            raise RuntimeError("OfflineAnalysisResource used outside a run")
        return OfflineAnalyser(self._workers, timeout_seconds)


class LlmResource(config_class(LlmOptions, dg.ConfigurableResource)):
    # Its fields are LlmOptions' (declared there once); the deployment's key, endpoint and pace state are added here.
    __doc__ = LlmOptions.__doc__

    def provider(self) -> "LlmProvider":
        """Raises settings.NotAllowed for an endpoint the deployment does not allow."""
        # Here, not at the top: a process that runs no LLM step never loads the openai SDK.
        from batch_pipeline.llm.provider import LlmProvider

        options = LlmOptions.model_validate(self.model_dump())
        return LlmProvider(
            LlmSettings(
                **options.model_dump(exclude={"base_url"}),
                api_key=settings.llm_api_key(),
                base_url=settings.llm_base_url(options.base_url),
                rate_limit_url=settings.rate_limit_url(),
            )
        )


class StepOutputsIOManager(dg.ConfigurableIOManagerFactory):
    """Step outputs (small references) pickled in the instance's storage folder, as Dagster's
    filesystem IO manager does, without its base_dir: where the run writes is not run config's."""

    def create_io_manager(self, context: dg.InitResourceContext) -> dg.IOManager:
        return dg.FilesystemIOManager().create_io_manager(context)
