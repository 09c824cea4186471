"""The per-run ProcessingContext: which analysis, which model, which extra instructions.

It arrives as run config and travels with every partition; nothing else holds it.
"""

import enum
import hashlib
import json

import dagster as dg
from pydantic import Field

from batch_pipeline.analysis_models import REGISTRY, AnalysisModel

LOCAL_AI_MODEL = "local"
MODEL_KEY_TAG = "batch_pipeline/model_key"
AI_MODEL_TAG = "batch_pipeline/ai_model"
# Run priority for the queued run coordinator (the `dagster/priority` tag: higher starts first).
PRIORITY_TAG = "dagster/priority"
PRIORITIES = {"high": "10", "normal": "0", "low": "-10"}

# Built from the registry so Dagster refuses an unknown key at launch and the Launchpad offers the choices.
ModelKey = enum.Enum("ModelKey", {key: key for key in REGISTRY}, type=str)

MODEL_KEY_HELP = "; ".join(f"{m.key}: {m.description}" for m in REGISTRY.values())


class ProcessingContext(dg.Config):
    model_key: ModelKey = Field(description=f"The analysis to run. One of — {MODEL_KEY_HELP}")
    ai_model: str = Field(
        description="The LLM to use, as the provider names it (e.g. gpt-4.1-mini), or 'local' for the offline analysers.",
    )
    custom_instructions: str = Field(
        default="",
        description="Extra instructions appended to the system prompt. The offline analysers record but do not interpret them.",
    )

    @property
    def model(self) -> AnalysisModel:
        return REGISTRY[self.model_key.value]

    @property
    def is_local(self) -> bool:
        return self.ai_model == LOCAL_AI_MODEL

    def cache_key(self) -> str:
        """Identifies the full context: equal keys mean a stored result can be reused."""
        parts = [self.model_key.value, self.model.version, self.ai_model, self.custom_instructions]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    def as_run_config(self) -> dict[str, str]:
        return {"model_key": self.model_key.value, "ai_model": self.ai_model, "custom_instructions": self.custom_instructions}

    def run_tags(self, priority: str | None = None) -> dict[str, str]:
        """Tags for a run of this context: filterable in the UI, matched by the queue's per-model limits."""
        tags = {MODEL_KEY_TAG: self.model_key.value, AI_MODEL_TAG: self.ai_model}
        if priority is not None:
            tags[PRIORITY_TAG] = PRIORITIES[priority]
        return tags


def batch_run_config(project: str, source: str, context: ProcessingContext) -> dict:
    """Run config for document_batch_job over a folder or .jsonl file (what submit, the inbox sensor
    and the schedule launch)."""
    config = {"project": project, "source": source, "context": context.as_run_config()}
    return {"ops": {"create_document_records": {"config": config}}}
