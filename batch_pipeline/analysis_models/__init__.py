"""The analysis-model registry: one module per ``model_key``.

Adding a model is adding a module here that defines ``MODEL = AnalysisModel(...)``.
"""

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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

    def parse_result(self, result_json: str) -> BaseModel:
        return self.result_schema.model_validate_json(result_json)


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
