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

    def offline_version(self) -> str:
        """``version`` plus a digest of the installed versions of ``offline_data_packages`` and of
        ``offline_settings``: changing either never serves results cached under the other."""
        if not self.offline_data_packages and self.offline_settings is None:
            return self.version
        installed = ";".join(f"{name}=={distribution_version(name)}" for name in self.offline_data_packages)
        if self.offline_settings is not None:
            installed += ";" + self.offline_settings()
        return f"{self.version}+{hashlib.sha256(installed.encode()).hexdigest()[:12]}"

    def parse_result(self, result_json: str) -> BaseModel:
        return self.result_schema.model_validate_json(result_json)


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
