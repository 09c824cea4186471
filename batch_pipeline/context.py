"""The per-run ProcessingContext: which analysis, which model, which extra instructions.

It arrives as run config (``defs/config.py``) and travels with every partition; nothing else holds it.
"""

import enum
import hashlib
import json

from pydantic import BaseModel, ConfigDict

from batch_pipeline import settings
from batch_pipeline.analysis import REGISTRY, AnalysisModel

LOCAL_AI_MODEL = "local"
MODEL_KEY_TAG = "batch_pipeline/model_key"
AI_MODEL_TAG = "batch_pipeline/ai_model"
TRIGGER_TAG = "batch_pipeline/trigger"  # which sensor or schedule launched the run
RESUMED_FROM_TAG = "batch_pipeline/resumed_from"  # the run `batch-pipeline resume` finished
# A run's priority orders it twice: in Dagster's run queue (`dagster/priority`: higher starts first)
# and, on the Celery executor, on the broker (`dagster-celery/run_priority`, added to each step's
# default of 5: RabbitMQ hands a high run's steps (9) to workers before a normal (5) or low (1) one's).
PRIORITY_TAG = "dagster/priority"
BROKER_PRIORITY_TAG = "dagster-celery/run_priority"
PRIORITIES = {"high": "10", "normal": "0", "low": "-10"}
BROKER_PRIORITIES = {"high": "4", "normal": "0", "low": "-4"}
# Seconds after which the daemon's run monitoring stops a run (instance config: run_monitoring.enabled).
MAX_RUNTIME_TAG = "dagster/max_runtime"

# Built from the registry so Dagster refuses an unknown key at launch and the Launchpad offers the choices.
ModelKey = enum.Enum("ModelKey", {key: key for key in REGISTRY}, type=str)


class ProcessingContext(BaseModel):
    model_config = ConfigDict(frozen=True)

    model_key: ModelKey
    ai_model: str
    custom_instructions: str = ""

    @property
    def model(self) -> AnalysisModel:
        return REGISTRY[self.model_key.value]

    @property
    def is_local(self) -> bool:
        return self.ai_model == LOCAL_AI_MODEL

    @property
    def analyser_version(self) -> str:
        """What produced the results besides the context itself: the model's version, and for the
        offline analysers also the versions of the libraries whose data they use and the number of
        findings a result keeps. An LLM's answers are not bought again when that number changes."""
        return self.model.offline_version(settings.max_findings()) if self.is_local else self.model.version

    def cache_key(self) -> str:
        """Identifies the full context: equal keys mean a stored result can be reused."""
        parts = [self.model_key.value, self.analyser_version, self.ai_model, self.custom_instructions]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    def as_run_config(self) -> dict[str, str]:
        return {
            "model_key": self.model_key.value,
            "ai_model": self.ai_model,
            "custom_instructions": self.custom_instructions,
        }

    def run_tags(self, priority: str | None = None) -> dict[str, str]:
        """Tags for a run of this context: filterable in the UI, matched by the queue's per-model limits."""
        tags = {MODEL_KEY_TAG: self.model_key.value, AI_MODEL_TAG: self.ai_model}
        if priority is not None:
            tags[PRIORITY_TAG] = PRIORITIES[priority]
            tags[BROKER_PRIORITY_TAG] = BROKER_PRIORITIES[priority]
        return tags
