"""nightly_compliance_sweep: the offline compliance analysis every night (stopped until an operator turns it on)."""

import dagster as dg

from batch_pipeline import settings
from batch_pipeline.context import LOCAL_AI_MODEL, ProcessingContext
from batch_pipeline.defs.config import batch_run_config
from batch_pipeline.defs.job import document_batch_job
from batch_pipeline.defs.tags import TRIGGER_TAG, run_tags


@dg.schedule(
    job=document_batch_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every night at 02:00 UTC: content_compliance over $BATCH_PIPELINE_SWEEP_SOURCE with the "
    "offline analysers. Unchanged documents come from the cache, so only new ones are analysed.",
)
def nightly_compliance_sweep(context: dg.ScheduleEvaluationContext):
    folder = settings.sweep_dir()
    if not folder.is_dir():
        return dg.SkipReason(f"sweep folder {folder} does not exist (set {settings.SWEEP_SOURCE_ENV})")
    processing = ProcessingContext(model_key="content_compliance", ai_model=LOCAL_AI_MODEL)
    return dg.RunRequest(
        run_key=context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else None,
        run_config=batch_run_config(
            "nightly-sweep", str(folder.resolve()), processing, settings.triggered_run_executor()
        ),
        tags={**run_tags(processing, "low", "nightly-sweep"), TRIGGER_TAG: "nightly_compliance_sweep"},
    )
