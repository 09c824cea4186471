"""How two values of one field are compared, by the field's type in the analysis's schema; every
figure `compare` and `evaluate` print says which rule made it.

- exact: enums, booleans, integers, strings with a format or a pattern;
- tolerance: numbers agree within 1 % of the larger (or 1e-9 apart);
- normalised: short strings agree when equal after case folding and collapsing spaces;
- set F1: lists score the F1 of their items as sets (items of objects by their enum, boolean and
  integer fields, e.g. findings by category and line; else by all their normalised values);
- changed: free text (strings whose values run long) is reported as changed or not, and counts
  as agreement only when unchanged after normalising.
"""

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

RELATIVE_TOLERANCE = 0.01
ABSOLUTE_TOLERANCE = 1e-9
SHORT_STRING = 80  # characters: longer values, at the median, make a field free text
RULE_TEXT = {
    "exact": "exact match",
    "tolerance": f"numbers within {RELATIVE_TOLERANCE:.0%}",
    "normalised": "equal after case folding and collapsing spaces",
    "set_f1": "F1 of the list's items as sets",
    "changed": "free text: changed or not (after normalising)",
}


@dataclass(frozen=True)
class FieldRule:
    field: str
    rule: str  # a key of RULE_TEXT
    item_keys: tuple[str, ...] = ()  # set_f1 over objects: the item fields that identify an item

    @property
    def described(self) -> str:
        if self.rule == "set_f1" and self.item_keys:
            return f"{RULE_TEXT['set_f1']} (items by {', '.join(self.item_keys)})"
        return RULE_TEXT[self.rule]

    def score(self, a: Any, b: Any) -> float:
        """1.0 for agreement, 0.0 for none; set_f1 anything between."""
        if self.rule == "set_f1":
            return f1(self.items(a), self.items(b))
        return 1.0 if self.agree(a, b) else 0.0

    def agree(self, a: Any, b: Any) -> bool:
        if a is None or b is None:
            return a is None and b is None
        if self.rule == "tolerance" and _is_number(a) and _is_number(b):
            return math.isclose(float(a), float(b), rel_tol=RELATIVE_TOLERANCE, abs_tol=ABSOLUTE_TOLERANCE)
        if self.rule in ("normalised", "changed"):
            return normalise(a) == normalise(b)
        if self.rule == "set_f1":
            return self.items(a) == self.items(b)
        if isinstance(a, bool) or isinstance(b, bool):
            return a is b
        return a == b

    def items(self, values: Any) -> set:
        if not isinstance(values, list):
            return set()
        found = set()
        for item in values:
            if isinstance(item, dict):
                keys = self.item_keys or tuple(sorted(item))
                found.add(tuple(_hashable(item.get(key)) for key in keys))
            else:
                found.add(_hashable(item))
        return found


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _hashable(value: Any) -> Any:
    if isinstance(value, str):
        return normalise(value)
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def normalise(value: Any) -> str:
    return re.sub(r"\s+", " ", str(value)).strip().casefold()


@dataclass
class ItemTally:
    """List items matched over many documents: micro-averaged precision, recall and F1 of what was
    found against what was expected (nothing expected and nothing found scores 1)."""

    common: int = 0
    expected: int = 0
    found: int = 0

    def add(self, expected: set, found: set) -> None:
        self.common += len(expected & found)
        self.expected += len(expected)
        self.found += len(found)

    @property
    def precision(self) -> float:
        return self.common / self.found if self.found else (1.0 if not self.expected else 0.0)

    @property
    def recall(self) -> float:
        return self.common / self.expected if self.expected else 1.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


def f1(a: set, b: set) -> float:
    """F1 of b against a (symmetric); two empty sets agree."""
    if not a and not b:
        return 1.0
    common = len(a & b)
    return 0.0 if not common else 2 * common / (len(a) + len(b))


def rules_for(schema: dict, samples: Sequence[dict]) -> dict[str, FieldRule]:
    """A rule per top-level field of the schema; samples (results) tell short strings from free text."""
    rules = {}
    for field, node in schema["properties"].items():
        rules[field] = _rule(field, node, [s.get(field) for s in samples if isinstance(s, dict)])
    return rules


def _kind(node: dict) -> str:
    declared = node.get("type")
    kinds = [k for k in (declared if isinstance(declared, list) else [declared]) if k != "null"]
    return kinds[0] if kinds else "string"


def _rule(field: str, node: dict, values: list) -> FieldRule:
    kind = _kind(node)
    if "enum" in node or kind in ("boolean", "integer"):
        return FieldRule(field, "exact")
    if kind == "number":
        return FieldRule(field, "tolerance")
    if kind == "array":
        items = node.get("items") or {}
        if _kind(items) == "object":
            props = items.get("properties") or {}
            keys = tuple(k for k, sub in props.items() if "enum" in sub or _kind(sub) in ("boolean", "integer"))
            return FieldRule(field, "set_f1", keys)
        return FieldRule(field, "set_f1")
    if kind == "object":
        return FieldRule(field, "exact")
    if "format" in node or "pattern" in node:
        return FieldRule(field, "exact")
    lengths = [len(v) for v in values if isinstance(v, str)]
    if lengths and statistics.median(lengths) > SHORT_STRING:
        return FieldRule(field, "changed")
    return FieldRule(field, "normalised")
