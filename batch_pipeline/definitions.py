"""The code location: ``batch_pipeline.definitions:defs``."""

import dagster as dg

from batch_pipeline.defs.executor import batch_executor
from batch_pipeline.defs.job import ASSET_RESOURCES, analysed_documents, analysed_documents_job, document_batch_job
from batch_pipeline.defs.launch_schema import launch_safe
from batch_pipeline.defs.triggers.comparison import compare_contexts_job, comparison_runs_sensor
from batch_pipeline.defs.triggers.failure_sensor import batch_failure_sensor
from batch_pipeline.defs.triggers.inbox_sensor import InboxConfig, inbox_sensor
from batch_pipeline.defs.triggers.nightly_sweep import nightly_compliance_sweep

defs = dg.Definitions(
    assets=[analysed_documents],
    jobs=[document_batch_job, analysed_documents_job, compare_contexts_job],
    sensors=[inbox_sensor, batch_failure_sensor, comparison_runs_sensor],
    schedules=[nightly_compliance_sweep],
    resources={"inbox": launch_safe(InboxConfig.from_env()), **ASSET_RESOURCES},  # the job carries its own
    executor=batch_executor,  # for Materialize on the asset's page, as for the job
)


def resolve_document_batch_job() -> dg.JobDefinition:
    """The job with its resources, for dagster.build_reconstructable_job (used by `batch-pipeline resume`)."""
    return defs.resolve_job_def(document_batch_job.name)


def resolve_analysed_documents_job() -> dg.JobDefinition:
    """The asset's job with its resources (`batch-pipeline resume` of a Materialize run)."""
    return defs.resolve_job_def(analysed_documents_job.name)
