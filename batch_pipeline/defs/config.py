"""The job's run config: what the Launchpad shows (with every field's description) and what
every trigger builds. All of it is set on ``create_document_records``."""

import enum

from batch_pipeline.analysis.registry import Catalogue, catalogue
from batch_pipeline.batch.request import BatchRequest
from batch_pipeline.context import ProcessingContext
from batch_pipeline.defs.assets import ASSET_NODE
from batch_pipeline.defs.config_classes import config_class

BATCH_OP = "create_document_records"


def model_key_choices(loaded: Catalogue) -> tuple[type[enum.Enum], str]:
    """The Launchpad's model_key: an enum of every key the deployment offers, and a description
    listing each with its own (a broken definition is offered too, so that a launch naming it is
    refused with its error rather than Dagster's "not in the enum")."""
    keys = loaded.offered_keys
    choices = enum.Enum("ModelKey", {key: key for key in keys}, type=str)
    lines = [f"{key}: {loaded.analyses[key].description}" if key in loaded.analyses else f"{key}: (broken, see "
             "`batch-pipeline models`)" for key in keys]  # fmt: skip
    return choices, "The analysis to run. One of — " + "; ".join(lines)


ModelKey, MODEL_KEY_DESCRIPTION = model_key_choices(catalogue())
# What the Launchpad shows otherwise than the plain model declares: model_key as the enum of the
# analyses this code location loaded (a reload of the code location reads the files again).
LAUNCHPAD_OVERRIDES = (((ProcessingContext, "model_key"), (ModelKey, MODEL_KEY_DESCRIPTION)),)


class BatchConfig(config_class(BatchRequest, overrides=LAUNCHPAD_OVERRIDES)):
    # Every field is declared once, on BatchRequest.
    __doc__ = BatchRequest.__doc__

    def to_request(self) -> BatchRequest:
        return BatchRequest.model_validate(self.model_dump(mode="json"))


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
    """The batch's settings in a run config dict, of document_batch_job or of the asset (empty when absent)."""
    ops = run_config.get("ops", {})
    return ops.get(BATCH_OP, ops.get(ASSET_NODE, {})).get("config", {})
