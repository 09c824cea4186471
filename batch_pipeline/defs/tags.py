"""The run tags this code location sets and reads: its own, Dagster's and dagster-celery's."""

from batch_pipeline.context import ProcessingContext

PROJECT_TAG = "batch_pipeline/project"
MODEL_KEY_TAG = "batch_pipeline/model_key"
AI_MODEL_TAG = "batch_pipeline/ai_model"
TRIGGER_TAG = "batch_pipeline/trigger"  # which sensor or schedule launched the run
# The compare_contexts_job run whose contexts a run analyses (`batch-pipeline compare --launched-by`).
LAUNCHED_BY_TAG = "batch_pipeline/launched_by"
CONTEXT_INDEX_TAG = "batch_pipeline/context_index"  # which of the launcher's contexts (kept by resume)
RESUMED_FROM_TAG = "batch_pipeline/resumed_from"  # the run `batch-pipeline resume` finished
# The run whose max_cost_usd budget a run draws on, when not its own: `batch-pipeline resume` sets it.
BUDGET_RUN_TAG = "batch_pipeline/budget_of_run"
STOPPED_TAG = "batch_pipeline/stopped_by_signal"  # set by the first step that SIGTERM/SIGINT stopped
# A run's priority orders it twice: in Dagster's run queue (`dagster/priority`: higher starts first)
# and, on the Celery executor, on the broker (`dagster-celery/run_priority`, added to each step's
# default of 5: RabbitMQ hands a high run's steps (9) to workers before a normal (5) or low (1) one's).
PRIORITY_TAG = "dagster/priority"
BROKER_PRIORITY_TAG = "dagster-celery/run_priority"
PRIORITIES = {"high": "10", "normal": "0", "low": "-10"}
BROKER_PRIORITIES = {"high": "4", "normal": "0", "low": "-4"}
PARTITION_TAG = "dagster/partition"  # the project a Materialize run of analysed_documents is for
# Seconds after which the daemon's run monitoring stops a run (instance config: run_monitoring.enabled).
MAX_RUNTIME_TAG = "dagster/max_runtime"


def run_tags(context: ProcessingContext, priority: str | None = None, project: str | None = None) -> dict[str, str]:
    """Tags for a run of this context: filterable in the UI, matched by the queue's per-model limits."""
    tags = {MODEL_KEY_TAG: context.model_key, AI_MODEL_TAG: context.ai_model}
    if project is not None:
        tags[PROJECT_TAG] = project
    if priority is not None:
        tags[PRIORITY_TAG] = PRIORITIES[priority]
        tags[BROKER_PRIORITY_TAG] = BROKER_PRIORITIES[priority]
    return tags
