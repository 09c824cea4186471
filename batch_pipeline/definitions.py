"""The code location: ``batch_pipeline.definitions:defs``."""

import os

import dagster as dg

from batch_pipeline.defs.job import document_batch_job
from batch_pipeline.defs.resources import DocumentStoreResource, LlmResource
from batch_pipeline.defs.triggers.failure_sensor import batch_failure_sensor
from batch_pipeline.defs.triggers.inbox_sensor import InboxConfig, inbox_sensor
from batch_pipeline.defs.triggers.nightly_sweep import nightly_compliance_sweep

# EnvVar fails every run when its variable is unset, so bind it only when there is a key:
# offline runs (ai_model: local) then need no key at all.
llm = LlmResource(api_key=dg.EnvVar("OPENAI_API_KEY")) if os.environ.get("OPENAI_API_KEY") else LlmResource()

defs = dg.Definitions(
    jobs=[document_batch_job],
    sensors=[inbox_sensor, batch_failure_sensor],
    schedules=[nightly_compliance_sweep],
    resources={"document_store": DocumentStoreResource(), "llm": llm, "inbox": InboxConfig.from_env()},
)


def resolve_document_batch_job() -> dg.JobDefinition:
    """The job with its resources, for dagster.build_reconstructable_job (used by `batch-pipeline resume`)."""
    return defs.resolve_job_def(document_batch_job.name)
