"""batch_failure_sensor: log every failed batch and post it to a webhook."""

import json
import os
import urllib.request

import dagster as dg

from batch_pipeline import settings
from batch_pipeline.defs.config import batch_config_of
from batch_pipeline.defs.resources import UNFINISHED_NOTE
from batch_pipeline.outcome import CheckOutcome, count_failed
from batch_pipeline.store import DocumentStore
from batch_pipeline.store.run_records import run_record

WEBHOOK_ENV = "BATCH_PIPELINE_FAILURE_WEBHOOK_URL"
WEBHOOK_TIMEOUT_SECONDS = 10


def failure_message(
    run: dg.DagsterRun, error: str | None, status_counts: dict[str, int], failed_checks: list[CheckOutcome] = ()
) -> dict:
    failed = count_failed(status_counts)
    checks = "; failed its check " + ", ".join(c.name for c in failed_checks) if failed_checks else ""
    config = batch_config_of(run.run_config)
    context = config.get("context", {})
    return {
        "text": f"Batch run {run.run_id} failed: {failed} failed document(s) of {sum(status_counts.values())}{checks}",
        "run_id": run.run_id,
        "job": run.job_name,
        "project": config.get("project"),
        "model_key": context.get("model_key"),
        "ai_model": context.get("ai_model"),
        "custom_instructions": context.get("custom_instructions", ""),
        "failed_documents": failed,
        "status_counts": status_counts,
        "failed_checks": [check.model_dump() for check in failed_checks],
        "error": (error or "")[:500],
    }


@dg.run_failure_sensor(
    # Every job of the code location; the runs that analyse a batch are document_batch_job's and the
    # asset job's (Materialize), not compare_contexts_job's.
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks a failed batch's unfinished documents interrupted, logs the batch (run, context, failed "
    "documents) and posts it to $BATCH_PIPELINE_FAILURE_WEBHOOK_URL when set.",
)
def batch_failure_sensor(context: dg.RunFailureSensorContext):
    if not batch_config_of(context.dagster_run.run_config):
        return
    run_id = context.dagster_run.run_id
    store = DocumentStore(settings.database_url())
    try:
        store.create_schema()
        # A run with a process per step has no resource that outlives it to do this (resources.py).
        store.mark_interrupted(run_id, UNFINISHED_NOTE.format(run_id=run_id))
        counts = store.status_counts(run_id)
        record = run_record(store, run_id)
    finally:
        store.close()
    failed_checks = record.failed_checks if record is not None else []
    message = failure_message(context.dagster_run, context.failure_event.message, counts, failed_checks)
    context.log.error(json.dumps(message))
    if url := os.environ.get(WEBHOOK_ENV):
        post_json(url, message)


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    # urllib would follow a 301/302/303 with a GET that drops the message, and report success.
    def redirect_request(self, *args, **kwargs):
        return None


def post_json(url: str, message: dict) -> None:
    """POST a JSON body; any answer but 2xx (a redirect included) raises urllib's HTTPError."""
    request = urllib.request.Request(
        url, data=json.dumps(message).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    opener = urllib.request.build_opener(_RefuseRedirects)
    with opener.open(request, timeout=WEBHOOK_TIMEOUT_SECONDS):
        pass
