"""The per-run ProcessingContext: which analysis, which model, which extra instructions.

It arrives as run config (``defs/config.py``) and travels with every partition; nothing else holds
it. At launch it is pinned to the analysis definition it names (``PinnedContext``): every step,
worker and resume of the run analyses with that definition, whatever happens to the file later.
"""

import hashlib
import json

from pydantic import BaseModel, ConfigDict, Field

from batch_pipeline import settings
from batch_pipeline.analysis.analysis import Analysis, compiled
from batch_pipeline.analysis.definition import AnalysisDefinition
from batch_pipeline.analysis.registry import Catalogue

LOCAL_AI_MODEL = "local"
# How soon a run should start and its steps be worked on (defs/tags.py says how Dagster and the broker are told).
PRIORITY_NAMES = ("high", "normal", "low")


class ProcessingContext(BaseModel):
    """The analysis, the model and the extra instructions a run's documents are analysed under."""

    model_config = ConfigDict(frozen=True)

    model_key: str = Field(
        description="The analysis to run: one of those the deployment loaded (`batch-pipeline models` lists them)."
    )
    ai_model: str = Field(
        description="The LLM to use, as the provider names it (e.g. gpt-4.1-mini), or 'local' for the offline analysers.",
    )
    custom_instructions: str = Field(
        default="",
        description="Extra instructions handed to the analysis's prompt (as a value, never as template text). "
        "The offline analysers record but do not interpret them.",
    )

    @property
    def is_local(self) -> bool:
        return self.ai_model == LOCAL_AI_MODEL

    def pinned(self, catalogue: Catalogue, launched_with: AnalysisDefinition | None = None) -> "PinnedContext":
        """This context with its definition: the one a resumed run was launched with, else the one its
        model_key names in the catalogue (UnknownAnalysis if none)."""
        if launched_with is not None and launched_with.key == self.model_key:
            return PinnedContext(**self.model_dump(), definition=launched_with)
        return PinnedContext(**self.model_dump(), definition=catalogue.get(self.model_key).definition)

    def as_run_config(self) -> dict[str, str]:
        return {"model_key": self.model_key, "ai_model": self.ai_model, "custom_instructions": self.custom_instructions}


class PinnedContext(ProcessingContext):
    """A ProcessingContext with the analysis definition it was launched with: what partitions carry."""

    definition: AnalysisDefinition

    @property
    def model(self) -> Analysis:
        """The pinned analysis; for ai_model local with this installation's offline analyser. An LLM
        needs only the definition: its processes never read the catalogue."""
        return self.model_with_offline_analyser() if self.is_local else compiled(self.definition)

    def model_with_offline_analyser(self) -> Analysis:
        from batch_pipeline.analysis.registry import catalogue

        loaded = catalogue().analyses.get(self.model_key)
        # The offline analyser is code this installation has; it serves a pinned definition only when
        # the installation's definition is the same one.
        offline = loaded.offline if loaded is not None and loaded.digest == self.definition.digest else None
        return compiled(self.definition, offline)

    @property
    def analyser_version(self) -> str:
        """What produced the results besides the context itself: the definition's digest, and for the
        offline analysers also their code's version, the versions of the libraries whose data they use
        and the number of findings a result keeps. An LLM's answers are not bought again when that
        number changes."""
        return self.model.offline_version(settings.max_findings()) if self.is_local else self.model.version

    def cache_key(self) -> str:
        """Identifies the full context: equal keys mean a stored result can be reused."""
        parts = [self.model_key, self.analyser_version, self.ai_model, self.custom_instructions]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    def unpinned(self) -> ProcessingContext:
        return ProcessingContext(**self.model_dump(include=set(ProcessingContext.model_fields)))
