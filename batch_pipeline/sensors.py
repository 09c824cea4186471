"""Sensors: start a batch when files arrive in the inbox; report failed batches."""

import json
import os
from pathlib import Path

import dagster as dg
import httpx

from batch_pipeline import settings
from batch_pipeline.inbox import InboxBatch, InboxDefaults, InvalidBatchFile, new_or_changed, read_batch_settings, run_config, scan, snapshot
from batch_pipeline.jobs import document_batch_job
from batch_pipeline.store import OK, PENDING, DocumentStore

INBOX_ENV = "BATCH_PIPELINE_INBOX"
INBOX_INTERVAL_ENV = "BATCH_PIPELINE_INBOX_INTERVAL_SECONDS"
WEBHOOK_ENV = "BATCH_PIPELINE_FAILURE_WEBHOOK_URL"
INBOX_TAG = "batch_pipeline/trigger"


class InboxConfig(dg.ConfigurableResource):
    """The inbox folder and the defaults for batches whose folder has no batch.yaml."""

    folder: str | None = None  # unset: $BATCH_PIPELINE_INBOX, else <data folder>/inbox
    project: str = "inbox"
    model_key: str | None = None
    ai_model: str | None = None
    custom_instructions: str = ""
    priority: str = "normal"

    @classmethod
    def from_env(cls) -> "InboxConfig":
        """Settings from BATCH_PIPELINE_INBOX (the folder) and BATCH_PIPELINE_INBOX_<FIELD> (the defaults)."""
        fields = ("project", "model_key", "ai_model", "custom_instructions", "priority")
        values = {f: os.environ[f"BATCH_PIPELINE_INBOX_{f.upper()}"] for f in fields if f"BATCH_PIPELINE_INBOX_{f.upper()}" in os.environ}
        return cls(folder=os.environ.get(INBOX_ENV), **values)

    def path(self) -> Path:
        return Path(self.folder or os.environ.get(INBOX_ENV) or settings.data_dir() / "inbox")

    def defaults(self) -> InboxDefaults:
        return InboxDefaults(**self.model_dump(exclude={"folder"}))


@dg.sensor(
    job=document_batch_job,
    minimum_interval_seconds=int(os.environ.get(INBOX_INTERVAL_ENV, "30")),
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="New or changed .md/.txt files in the inbox folder become one batch per evaluation; "
    "the context comes from the folder's batch.yaml, else the inbox resource's defaults.",
)
def inbox_sensor(context: dg.SensorEvaluationContext, inbox: InboxConfig):
    folder = inbox.path()
    if not folder.is_dir():
        return dg.SkipReason(f"inbox folder {folder} does not exist")
    seen = json.loads(context.cursor) if context.cursor else {}
    current = scan(folder)
    fresh = new_or_changed(current, seen)
    if not fresh:
        return dg.SkipReason(f"no new or changed files in {folder}")
    try:
        project, processing, priority = read_batch_settings(folder, inbox.defaults())
    except InvalidBatchFile as e:
        return dg.SkipReason(f"{len(fresh)} new file(s) waiting, but {e}")
    batch = InboxBatch(project=project, context=processing, priority=priority, files=fresh)
    source = snapshot(folder, batch)
    context.update_cursor(json.dumps({**seen, **fresh}))
    return dg.RunRequest(
        run_key=batch.run_key,
        run_config=run_config(batch, source),
        tags={**processing.run_tags(priority), INBOX_TAG: "inbox_sensor"},
    )


def failure_message(run: dg.DagsterRun, error: str | None, status_counts: dict[str, int]) -> dict:
    failed = sum(n for status, n in status_counts.items() if status not in (OK, PENDING))
    config = run.run_config.get("ops", {}).get("create_document_records", {}).get("config", {})
    context = config.get("context", {})
    return {
        "text": f"Batch run {run.run_id} failed: {failed} failed document(s) of {sum(status_counts.values())}",
        "run_id": run.run_id,
        "job": run.job_name,
        "project": config.get("project"),
        "model_key": context.get("model_key"),
        "ai_model": context.get("ai_model"),
        "custom_instructions": context.get("custom_instructions", ""),
        "failed_documents": failed,
        "status_counts": status_counts,
        "error": (error or "")[:500],
    }


@dg.run_failure_sensor(
    monitored_jobs=[document_batch_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Logs every failed batch (run, context, failed documents) and posts it to "
    "$BATCH_PIPELINE_FAILURE_WEBHOOK_URL when set.",
)
def batch_failure_sensor(context: dg.RunFailureSensorContext):
    store = DocumentStore(settings.database_url())
    try:
        store.create_schema()
        counts = store.status_counts(context.dagster_run.run_id)
    finally:
        store.close()
    message = failure_message(context.dagster_run, context.failure_event.message, counts)
    context.log.error(json.dumps(message))
    if url := os.environ.get(WEBHOOK_ENV):
        response = httpx.post(url, json=message, timeout=10)
        response.raise_for_status()
