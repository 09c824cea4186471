"""The per-run ProcessingContext: which analysis, which model, which extra instructions.

It arrives as run config (``defs/config.py``) and travels with every partition; nothing else holds it.
"""

import enum
import hashlib
import json

from pydantic import BaseModel, ConfigDict, Field

from batch_pipeline import settings
from batch_pipeline.analysis import REGISTRY, AnalysisModel

LOCAL_AI_MODEL = "local"
# How soon a run should start and its steps be worked on (defs/tags.py says how Dagster and the broker are told).
PRIORITY_NAMES = ("high", "normal", "low")

# Built from the registry so Dagster refuses an unknown key at launch and the Launchpad offers the choices.
ModelKey = enum.Enum("ModelKey", {key: key for key in REGISTRY}, type=str)


MODEL_KEY_HELP = "; ".join(f"{m.key}: {m.description}" for m in REGISTRY.values())


class ProcessingContext(BaseModel):
    """The analysis, the model and the extra instructions a run's documents are analysed under."""

    model_config = ConfigDict(frozen=True)

    model_key: ModelKey = Field(description=f"The analysis to run. One of — {MODEL_KEY_HELP}")
    ai_model: str = Field(
        description="The LLM to use, as the provider names it (e.g. gpt-4.1-mini), or 'local' for the offline analysers.",
    )
    custom_instructions: str = Field(
        default="",
        description="Extra instructions appended to the system prompt. The offline analysers record but do not "
        "interpret them.",
    )

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
