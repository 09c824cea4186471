"""Dagster resources: thin wrappers that open the plain-Python services for a run."""

import dagster as dg
from pydantic import Field, PrivateAttr

from batch_pipeline import settings
from batch_pipeline.batch.offline import OfflineAnalyser, OfflineWorkers
from batch_pipeline.defs.executor import runs_steps_in_its_own_process
from batch_pipeline.llm.provider import LlmProvider
from batch_pipeline.llm.response_format import ResponseFormatMode
from batch_pipeline.llm.settings import STOP_GRACE_SECONDS, LlmSettings
from batch_pipeline.store import DocumentStore

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


class LlmResource(dg.ConfigurableResource):
    """An OpenAI-compatible chat-completions provider. The key is always $OPENAI_API_KEY (never run
    config); the endpoint is $OPENAI_BASE_URL or one the deployment allows; the shared pace's
    Redis is $BATCH_PIPELINE_RATE_LIMIT_URL."""

    base_url: str | None = Field(
        default=None,
        description="Unset: $OPENAI_BASE_URL, else api.openai.com. Otherwise one of the endpoints the deployment "
        "lists in $BATCH_PIPELINE_LLM_BASE_URLS; any other is refused before a request is sent.",
    )
    timeout_seconds: float = Field(default=60.0, description="Per-request timeout.")
    max_concurrent_requests: int = Field(default=64, description="Requests in flight at once, per partition step.")
    requests_per_minute: int | None = Field(
        default=None,
        description="The provider's requests-per-minute limit for this model and key. Unset: learned from the "
        "provider's x-ratelimit-* headers, else from its 429s.",
    )
    tokens_per_minute: int | None = Field(
        default=None,
        description="The provider's tokens-per-minute limit for this model and key. Unset: learned from the "
        "provider's x-ratelimit-* headers.",
    )
    max_attempts: int = Field(
        default=5,
        description="Attempts per request before a document fails on 5xx answers, timeouts or connection "
        "errors. HTTP 429s do not count: they are bounded by rate_limit_wait_seconds.",
    )
    rate_limit_wait_seconds: float = Field(
        default=600.0,
        description="How long one request may keep waiting on HTTP 429s (the provider's pacing) before its "
        "document ends rate_limited; re-running the batch then finishes it from the cache.",
    )
    retry_max_wait_seconds: float = Field(
        default=30.0,
        description="Longest wait between two attempts after a timeout or a 5xx (exponential backoff with "
        "jitter, starting at 0.5 s). A 429 waits as long as the provider asks instead.",
    )
    max_output_tokens: int = Field(default=4096, description="max_tokens of every completion.")
    max_repairs: int = Field(
        default=2,
        description="Repair requests (the answer and what is wrong with it, asking for a corrected one) for an "
        "answer that is not valid JSON for the schema, before the document ends invalid_output.",
    )
    response_format: ResponseFormatMode = Field(
        default=ResponseFormatMode.auto,
        description="auto: probe once per run, before any document, for the richest mode the server accepts: "
        "strict json_schema, else json_object+schema, json_object, prompt only.",
    )

    batch_poll_max_seconds: float = Field(
        default=60.0,
        description="llm_api batch: longest wait between two looks at a batch's status (from 1 s, growing 1.5x).",
    )
    batch_resubmissions: int = Field(
        default=2,
        description="llm_api batch: how many times the documents of a batch that expired or was cancelled "
        "unanswered are sent again in a new batch, before they end batch_expired.",
    )
    stop_grace_seconds: float = Field(
        default=STOP_GRACE_SECONDS,
        description="On SIGTERM or SIGINT nothing new is sent; answers to the requests already in flight are "
        "awaited this long and stored, the rest of the run is marked interrupted for `batch-pipeline resume`.",
    )

    def provider(self) -> LlmProvider:
        """Raises settings.NotAllowed for an endpoint the deployment does not allow."""
        deployment = ("api_key", "base_url", "rate_limit_url")
        tuning = {name: getattr(self, name) for name in LlmSettings.model_fields if name not in deployment}
        return LlmProvider(
            LlmSettings(
                api_key=settings.llm_api_key(),
                base_url=settings.llm_base_url(self.base_url),
                rate_limit_url=settings.rate_limit_url(),
                **tuning,
            )
        )


class StepOutputsIOManager(dg.ConfigurableIOManagerFactory):
    """Step outputs (small references) pickled in the instance's storage folder, as Dagster's
    filesystem IO manager does, without its base_dir: where the run writes is not run config's."""

    def create_io_manager(self, context: dg.InitResourceContext) -> dg.IOManager:
        return dg.FilesystemIOManager().create_io_manager(context)
