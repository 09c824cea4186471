"""The code location: ``batch_pipeline.definitions:defs``."""

import dagster as dg

from batch_pipeline.defs.assets import analysed_documents
from batch_pipeline.defs.job import document_batch_job
from batch_pipeline.defs.triggers.failure_sensor import batch_failure_sensor
from batch_pipeline.defs.triggers.inbox_sensor import InboxConfig, inbox_sensor
from batch_pipeline.defs.triggers.nightly_sweep import nightly_compliance_sweep

defs = dg.Definitions(
    assets=[analysed_documents],
    jobs=[document_batch_job],
    sensors=[inbox_sensor, batch_failure_sensor],
    schedules=[nightly_compliance_sweep],
    resources={"inbox": InboxConfig.from_env()},  # the job carries its own resources
)


def resolve_document_batch_job() -> dg.JobDefinition:
    """The job with its resources, for dagster.build_reconstructable_job (used by `batch-pipeline resume`)."""
    return defs.resolve_job_def(document_batch_job.name)
