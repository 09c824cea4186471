"""The job's run config: what the Launchpad shows (with every field's description) and what
every trigger builds. All of it is set on ``create_document_records``."""

from batch_pipeline.batch.request import BatchRequest
from batch_pipeline.context import ProcessingContext
from batch_pipeline.defs.config_classes import config_class

BATCH_OP = "create_document_records"


class BatchConfig(config_class(BatchRequest)):
    # Every field is declared once, on BatchRequest.
    __doc__ = BatchRequest.__doc__

    def to_request(self) -> BatchRequest:
        return BatchRequest.model_validate(self.model_dump())


def batch_run_config(project: str, source: str, context: ProcessingContext, executor: str | None = None) -> dict:
    """Run config for document_batch_job over a folder or .jsonl file (what submit, the inbox sensor
    and the schedule launch): only what they set, as a user would write it. executor: in_process
    (None: the job's default), multiprocess or celery, with that executor's defaults."""
    config = {"project": project, "source": source, "context": context.as_run_config()}
    run_config: dict = {"ops": {BATCH_OP: {"config": config}}}
    if executor is not None:
        run_config["execution"] = {"config": {executor: {}}}
    return run_config


def batch_config_of(run_config: dict) -> dict:
    """The create_document_records section of a run config dict (empty when absent)."""
    return run_config.get("ops", {}).get(BATCH_OP, {}).get("config", {})
