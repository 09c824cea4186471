"""inbox_sensor: new or changed files in the inbox folder become one batch per evaluation."""

import json
import os

import dagster as dg

from batch_pipeline import settings
from batch_pipeline.defs.config import batch_run_config
from batch_pipeline.defs.config_classes import config_class
from batch_pipeline.defs.job import document_batch_job
from batch_pipeline.defs.tags import TRIGGER_TAG, run_tags
from batch_pipeline.documents.inbox import (
    InboxBatch,
    InboxDefaults,
    InvalidBatchFile,
    new_or_changed,
    read_batch_settings,
    scan,
    snapshot,
)

INBOX_INTERVAL_ENV = "BATCH_PIPELINE_INBOX_INTERVAL_SECONDS"


class InboxConfig(config_class(InboxDefaults, dg.ConfigurableResource)):
    """The defaults for batches whose folder has no batch.yaml. The folder is the deployment's
    ($BATCH_PIPELINE_INBOX, else <data folder>/inbox): runs may read their snapshots there."""

    # Its fields are InboxDefaults' (declared there once).

    @classmethod
    def from_env(cls) -> "InboxConfig":
        """The defaults from BATCH_PIPELINE_INBOX_<FIELD>."""
        names = [f"BATCH_PIPELINE_INBOX_{field.upper()}" for field in InboxDefaults.model_fields]
        return cls(
            **{
                field: os.environ[name]
                for field, name in zip(InboxDefaults.model_fields, names, strict=True)
                if name in os.environ
            }
        )

    def defaults(self) -> InboxDefaults:
        return InboxDefaults.model_validate(self.model_dump())


@dg.sensor(
    job=document_batch_job,
    minimum_interval_seconds=int(os.environ.get(INBOX_INTERVAL_ENV, "30")),
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="New or changed .md/.txt files in the inbox folder become one batch per evaluation; "
    "the context comes from the folder's batch.yaml, else the inbox resource's defaults.",
)
def inbox_sensor(context: dg.SensorEvaluationContext, inbox: InboxConfig):
    folder = settings.inbox_dir()
    if not folder.is_dir():
        return dg.SkipReason(f"inbox folder {folder} does not exist")
    seen = json.loads(context.cursor) if context.cursor else {}
    current = scan(folder)
    if current.skipped:
        context.log.warning(f"inbox entries skipped: {[str(entry) for entry in current.skipped[:50]]}")
    fresh = new_or_changed(current.files, seen)
    if not fresh:
        skipped = f" ({len(current.skipped)} entries skipped, see the log)" if current.skipped else ""
        return dg.SkipReason(f"no new or changed files in {folder}{skipped}")
    try:
        project, processing, priority = read_batch_settings(folder, inbox.defaults())
    except InvalidBatchFile as e:
        return dg.SkipReason(f"{len(fresh)} new file(s) waiting, but {e}")
    batch = InboxBatch(project=project, context=processing, priority=priority, files=fresh)
    source = snapshot(folder, batch, current.paths)
    context.update_cursor(json.dumps({**seen, **fresh}))
    return dg.RunRequest(
        run_key=batch.run_key,
        run_config=batch_run_config(batch.project, str(source), batch.context, settings.triggered_run_executor()),
        tags={**run_tags(processing, priority, project), TRIGGER_TAG: "inbox_sensor"},
    )
