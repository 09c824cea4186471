"""How an analysis's results are summarised, as its definition file says: counts per value of
enums, booleans and short strings, list lengths, numbers' mean and median, and which documents
are flagged (shown first in report.html, counted in the asset's metadata)."""

import statistics
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from batch_pipeline.analysis.json_schema import field_schema

# A section title mapped to label -> number, rendered as one table in the run report.
SummarySections = dict[str, dict[str, int | float]]


class FlaggedWhen(BaseModel):
    """A document is flagged when its ``field`` is ``equals`` (a value), or, with ``not_empty``, when
    that list holds anything."""

    model_config = ConfigDict(extra="forbid")
    field: str
    equals: Any = None
    not_empty: bool = False

    @model_validator(mode="after")
    def _one_condition(self) -> "FlaggedWhen":
        gives_equals = "equals" in self.model_fields_set and not (self.not_empty and self.equals is None)
        if gives_equals == self.not_empty:
            raise ValueError("say either equals: <value> or not_empty: true")
        return self


class SummarySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    counts: list[str] = Field(
        default=[], description="Fields counted per value; `list.field` counts inside a list's items"
    )
    lengths: list[str] = Field(
        default=[], description="Lists: their items in total, the documents with any, the longest"
    )
    numbers: list[str] = Field(default=[], description="Numbers: total, mean, median, max")
    flagged: FlaggedWhen | None = None
    # An enum field whose values, listed from least to most severe, rank the flagged documents (most severe first).
    rank_by: str | None = None
    # A list of objects whose items report.html shows for each flagged document (e.g. findings).
    details: str | None = None

    def problems(self, schema: dict) -> Iterator[tuple[tuple, str]]:
        """(where in the summary, what is wrong) for each field the schema does not have or cannot be
        summarised that way."""
        for index, dotted in enumerate(self.counts):
            node = field_schema(schema, dotted)
            if node is None:
                yield ("counts", index), f"no field {dotted!r} in the schema"
            elif _kind(node) not in ("string", "boolean", "integer"):
                yield (
                    ("counts", index),
                    f"{dotted!r} is {_kind(node)}: counts are of enums, booleans, strings, integers",
                )
        for keyword, kinds in (("lengths", ("array",)), ("numbers", ("number", "integer"))):
            for index, dotted in enumerate(getattr(self, keyword)):
                node = field_schema(schema, dotted)
                if node is None or "." in dotted:
                    yield (keyword, index), f"no top-level field {dotted!r} in the schema"
                elif _kind(node) not in kinds:
                    yield (keyword, index), f"{dotted!r} is {_kind(node)}, not {' or '.join(kinds)}"
        for keyword, kinds in (("rank_by", ("string",)), ("details", ("array",))):
            dotted = getattr(self, keyword)
            if dotted is not None and (field_schema(schema, dotted) is None or "." in dotted):
                yield (keyword,), f"no top-level field {dotted!r} in the schema"
            elif dotted is not None and _kind(field_schema(schema, dotted)) not in kinds:
                yield (keyword,), f"{dotted!r} must be {' or '.join(kinds)}"
        if self.rank_by is not None and "enum" not in (field_schema(schema, self.rank_by) or {}):
            yield ("rank_by",), f"{self.rank_by!r} must be an enum (its values rank the flagged documents)"
        if self.flagged is not None and field_schema(schema, self.flagged.field) is None:
            yield ("flagged", "field"), f"no field {self.flagged.field!r} in the schema"

    def summarise(self, results: Sequence[dict]) -> SummarySections:
        sections: SummarySections = {}
        for dotted in self.counts:
            values = Counter(_label(v) for result in results for v in _values(result, dotted))
            sections[f"{dotted}: documents per value" if "." not in dotted else f"{dotted}: items per value"] = dict(
                values.most_common()
            )
        for name in self.lengths:
            lengths = [len(result.get(name) or []) for result in results]
            sections[f"{name}: items"] = {
                "total": sum(lengths),
                "documents_with_any": sum(1 for n in lengths if n),
                "max_per_document": max(lengths, default=0),
            }
        for name in self.numbers:
            numbers = [result[name] for result in results if isinstance(result.get(name), int | float)]
            sections[f"{name}: values"] = {
                "total": round(sum(numbers), 6),
                "mean": round(statistics.fmean(numbers), 2) if numbers else 0,
                "median": statistics.median(numbers) if numbers else 0,
                "max": max(numbers, default=0),
            }
        if self.flagged is not None:
            sections["Documents flagged"] = {
                "flagged": sum(1 for r in results if self.is_flagged(r)),
                "not_flagged": sum(1 for r in results if not self.is_flagged(r)),
            }
        return sections

    def is_flagged(self, result: dict) -> bool:
        if self.flagged is None:
            return False
        values = list(_values(result, self.flagged.field))
        if self.flagged.not_empty:
            return any(values) if "." not in self.flagged.field else bool(values)
        return any(value == self.flagged.equals for value in values)

    def rank(self, result: dict, schema: dict) -> int:
        """0 for the most severe value of rank_by, larger for less severe ones."""
        if self.rank_by is None:
            return 0
        order = list(reversed((field_schema(schema, self.rank_by) or {}).get("enum") or []))
        value = result.get(self.rank_by)
        return order.index(value) if value in order else len(order)


def _kind(node: dict) -> Literal["string", "number", "integer", "boolean", "array", "object"]:
    declared = node.get("type")
    names = [n for n in (declared if isinstance(declared, list) else [declared]) if n != "null"]
    return names[0]


def _values(result: dict, dotted: str) -> Iterator[Any]:
    """The value of a top-level field, or each value of ``list.field`` across the list's items."""
    head, _, rest = dotted.partition(".")
    value = result.get(head)
    if not rest:
        yield value
        return
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, dict):
            yield from _values(item, rest)


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)
