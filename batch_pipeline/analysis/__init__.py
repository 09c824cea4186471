"""The analysis models: one module per ``model_key``, each with its result schema, prompt and
offline analyser, found by this registry.

Adding a model is adding a module here that defines ``MODEL = AnalysisModel(...)``.
"""

import hashlib
import importlib
import importlib.metadata
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

from pydantic import BaseModel

from batch_pipeline.analysis.stored_result import OMITTED_KEY, StoredResult, parse_stored

# A section title mapped to label -> number, rendered as one table in the run report.
SummarySections = dict[str, dict[str, int | float]]


@dataclass(frozen=True)
class AnalysisModel:
    key: str
    description: str
    # Part of the result-cache key: bump it when the prompt, schema or offline analyser changes.
    version: str
    system_prompt: str
    result_schema: type[BaseModel]
    analyse_offline: Callable[[str], BaseModel]
    summarize: Callable[[Sequence[BaseModel]], SummarySections]
    # Distributions whose shipped data shapes the offline analyser's results (phone metadata,
    # secret patterns, language models): upgrading one must not keep serving old cached results.
    offline_data_packages: tuple[str, ...] = ()
    # The deployment's settings the offline analyser reads (e.g. the phone regions), as text.
    offline_settings: Callable[[], str] | None = None

    def __post_init__(self) -> None:
        if OMITTED_KEY in self.result_schema.model_fields:
            raise ValueError(f"{self.key}: a result field may not be named {OMITTED_KEY!r}, the store's own key")

    def offline_version(self, max_items: int | None = None) -> str:
        """``version`` plus a digest of the installed versions of ``offline_data_packages``, of
        ``offline_settings`` and of the ``max_items`` results are stored with: changing any never
        serves results cached under another."""
        if not self.offline_data_packages and self.offline_settings is None and max_items is None:
            return self.version
        installed = ";".join(f"{name}=={distribution_version(name)}" for name in self.offline_data_packages)
        if self.offline_settings is not None:
            installed += ";" + self.offline_settings()
        if max_items is not None:
            installed += f";max_items={max_items}"
        return f"{self.version}+{hashlib.sha256(installed.encode()).hexdigest()[:12]}"

    def parse_stored(self, result_json: str) -> StoredResult:
        """A stored result and how many items each of its lists lost."""
        return parse_stored(self.result_schema, result_json)

    def parse_result(self, result_json: str) -> BaseModel:
        return self.parse_stored(result_json).result


@cache
def distribution_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not-installed"


def _discover() -> dict[str, AnalysisModel]:
    models: dict[str, AnalysisModel] = {}
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        model = getattr(module, "MODEL", None)
        if isinstance(model, AnalysisModel):
            if model.key in models:
                raise ValueError(f"Two analysis models use the key {model.key!r}")
            models[model.key] = model
    return dict(sorted(models.items()))


REGISTRY: dict[str, AnalysisModel] = _discover()


def get_model(key: str) -> AnalysisModel:
    try:
        return REGISTRY[key]
    except KeyError:
        raise KeyError(f"Unknown model_key {key!r}; valid keys: {', '.join(REGISTRY)}") from None
