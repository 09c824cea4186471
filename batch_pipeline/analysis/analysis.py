"""An analysis ready to run: its definition, the model its answers are validated with, and the
offline analyser a Python package may attach to it."""

import hashlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from batch_pipeline.analysis import prompt_template
from batch_pipeline.analysis.definition import AnalysisDefinition
from batch_pipeline.analysis.json_schema import result_model, top_level_fields
from batch_pipeline.analysis.stored_result import StoredResult, parse_stored


@dataclass(frozen=True)
class AttachedAnalyser:
    """Code that answers an analysis without an LLM. ``version`` is the code's own: bump it when its
    logic changes (the definition's digest covers the prompt, schema and examples)."""

    analyse: Callable[[str], BaseModel | dict]
    version: str
    # Distributions whose shipped data shapes the results (phone metadata, secret patterns, language
    # models): upgrading one must not keep serving old cached results.
    data_packages: tuple[str, ...] = ()
    # The deployment's settings the analyser reads (e.g. the phone regions), as text.
    settings: Callable[[], str] | None = None


@dataclass(frozen=True)
class PackagedAnalysis:
    """What a Python package registers under the ``batch_pipeline.analyses`` entry-point group: its
    definition file and, optionally, an offline analyser."""

    definition_file: Path
    offline: AttachedAnalyser | None = None


@cache
def distribution_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not-installed"


@dataclass(frozen=True, eq=False)
class Analysis:
    definition: AnalysisDefinition
    result_schema: type[BaseModel]
    offline: AttachedAnalyser | None = None

    @property
    def key(self) -> str:
        return self.definition.key

    @property
    def description(self) -> str:
        return self.definition.description

    @property
    def digest(self) -> str:
        return self.definition.digest

    @property
    def json_schema(self) -> dict[str, Any]:
        """The output schema, already in the strict form every response-format mode takes (read-only)."""
        return self.definition.output_schema

    @property
    def fields(self) -> dict[str, str]:
        return top_level_fields(self.json_schema)

    @property
    def version(self) -> str:
        """What the stored results and the cache key say produced them, for an LLM."""
        return self.digest[:16]

    def offline_version(self, max_items: int | None = None) -> str:
        """The offline analyser's: the definition's digest, the code's version, the installed
        versions of its data packages, its settings and the ``max_items`` results are stored with:
        changing any never serves results cached under another."""
        if self.offline is None:
            raise ValueError(f"{self.key} has no offline analyser")
        parts = [self.offline.version]
        parts += [f"{name}=={distribution_version(name)}" for name in self.offline.data_packages]
        if self.offline.settings is not None:
            parts.append(self.offline.settings())
        if max_items is not None:
            parts.append(f"max_items={max_items}")
        return f"{self.version}+{hashlib.sha256(';'.join(parts).encode()).hexdigest()[:12]}"

    def system_prompt(self, custom_instructions: str) -> str:
        return prompt_template.render(self.definition.prompt, custom_instructions).strip()

    @property
    def prompt_places_instructions(self) -> bool:
        return prompt_template.uses_custom_instructions(self.definition.prompt)

    def analyse_offline(self, text: str) -> BaseModel:
        """The offline analyser's answer, validated against the definition's schema."""
        if self.offline is None:
            raise ValueError(f"{self.key} has no offline analyser")
        answer = self.offline.analyse(text)
        if isinstance(answer, BaseModel):
            answer = answer.model_dump(mode="json")
        return self.result_schema.model_validate(answer)

    def parse_stored(self, result_json: str) -> StoredResult:
        """A stored result and how many items each of its lists lost."""
        return parse_stored(self.result_schema, result_json)

    def parse_result(self, result_json: str) -> BaseModel:
        return self.parse_stored(result_json).result


_compiled: dict[tuple[str, AttachedAnalyser | None], Analysis] = {}


def compiled(definition: AnalysisDefinition, offline: AttachedAnalyser | None = None) -> Analysis:
    """One Analysis per definition (and analyser), compiled once per process: a memo of immutable
    values, keyed by the whole definition's content (its summary and description too, which the
    digest leaves out), so that a run gets back exactly the definition it carries."""
    key = (definition.content_hash, offline)
    if key not in _compiled:
        _compiled[key] = Analysis(definition, result_model(definition.output_schema, definition.key), offline)
    return _compiled[key]
