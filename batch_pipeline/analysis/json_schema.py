"""An analysis's output schema: the strict subset of JSON Schema that every structured-output mode
here accepts (OpenAI's strict structured outputs, llama.cpp's schema grammars, the schema in the
prompt), checked at load, and the pydantic model an answer is validated with.

The subset (OpenAI's strict mode's supported keywords, and what llama.cpp's grammars take): an
object root; every object lists all its properties in ``required`` and says
``additionalProperties: false``; a value that may be missing is nullable (``type: [X, "null"]``),
never optional; ``enum`` (its values of the field's type), arrays (``items``,
``minItems``/``maxItems``), nested objects (at most 10 levels), numbers with bounds, strings with
a ``pattern`` written ``^...$`` (no lookaround) or one of the formats below. No ``$ref``, no
combinators, no string lengths: what a schema says, every mode can enforce.
"""

import datetime as dt
import ipaddress
import math
import re
import uuid
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, create_model

Path = tuple[str | int, ...]  # where in the schema, as keys and indexes

TYPES = ("object", "array", "string", "number", "integer", "boolean")
COMMON = {"type", "description", "title", "enum"}
ALLOWED = {
    "object": COMMON | {"properties", "required", "additionalProperties"},
    "array": COMMON | {"items", "minItems", "maxItems"},
    "string": COMMON | {"pattern", "format"},
    "number": COMMON | {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"},
    "integer": COMMON | {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"},
    "boolean": COMMON,
}
FORMATS: dict[str, Any] = {
    "date": dt.date,
    "date-time": dt.datetime,
    "time": dt.time,
    "uuid": uuid.UUID,
    "ipv4": ipaddress.IPv4Address,
    "ipv6": ipaddress.IPv6Address,
    "email": Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")],
    "hostname": Annotated[str, Field(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")],
    "duration": Annotated[str, Field(pattern=r"^P(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")],
}
# A name the store keeps beside a result's own fields (stored_result.OMITTED_KEY).
RESERVED_FIELDS = {"omitted"}
FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
MAX_DEPTH = 10  # OpenAI's limit on nesting
MAX_PROPERTIES = 5000  # OpenAI's limit on properties in one schema
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
COUNTS = ("minItems", "maxItems")
LOOKAROUND = re.compile(r"\(\?<?[=!]")
VALUE_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool}


class SchemaProblem(ValueError):
    def __init__(self, path: Path, message: str):
        super().__init__(message)
        self.path = path
        self.message = message


def strict_subset_problems(schema: Any) -> list[SchemaProblem]:
    """Every way ``schema`` leaves the strict subset, each with where it is."""
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return [SchemaProblem((), "the schema's root must be an object (type: object)")]
    problems = list(_node_problems(schema, ()))
    for name in RESERVED_FIELDS & set(schema.get("properties") or {}):
        problems.append(
            SchemaProblem(("properties", name), f"{name!r} is the store's own key; name the field otherwise")
        )
    return problems


def _types_of(node: dict) -> tuple[list[str], bool]:
    declared = node.get("type")
    names = declared if isinstance(declared, list) else [declared]
    return [n for n in names if n != "null"], "null" in names


def _node_problems(node: Any, path: Path) -> Iterator[SchemaProblem]:
    if not isinstance(node, dict):
        yield SchemaProblem(path, "a schema must be a mapping")
        return
    if sum(1 for part in path if part == "properties") + sum(1 for part in path if part == "items") > MAX_DEPTH:
        yield SchemaProblem(path, f"nested more than {MAX_DEPTH} levels deep")
        return
    types, nullable = _types_of(node)
    if not all(isinstance(t, str) for t in types) or len(types) != 1 or types[0] not in TYPES:
        yield SchemaProblem(
            (*path, "type"),
            f'type must be one of {", ".join(TYPES)} (or a list of one of them and "null"), not {node.get("type")!r}',
        )
        return
    kind = types[0]
    for keyword in sorted(set(node) - ALLOWED[kind]):
        yield SchemaProblem((*path, keyword), f"{keyword!r} is not in the strict subset for type {kind}")
    yield from _value_problems(node, path, kind, nullable)
    if kind == "string" and "format" in node and (not isinstance(node["format"], str) or node["format"] not in FORMATS):
        yield SchemaProblem((*path, "format"), f"format must be one of {', '.join(FORMATS)}")
    if kind == "string" and "pattern" in node:
        yield from _pattern_problems(node["pattern"], (*path, "pattern"))
    if kind == "object":
        yield from _object_problems(node, path)
    if kind == "array":
        if "items" not in node:
            yield SchemaProblem(path, "an array must say its items' schema (items)")
        else:
            yield from _node_problems(node["items"], (*path, "items"))


def _value_problems(node: dict, path: Path, kind: str, nullable: bool) -> Iterator[SchemaProblem]:
    """The keywords' own values: enum values of the field's type, bounds that are finite numbers,
    counts that are whole numbers from 0."""
    if "enum" in node:
        values = node["enum"]
        if not isinstance(values, list) or not values:
            yield SchemaProblem((*path, "enum"), "enum must be a non-empty list")
        elif kind in VALUE_TYPES:
            wrong = [v for v in values if not (v is None and nullable) and not _of_type(v, kind)]
            if wrong:
                yield SchemaProblem((*path, "enum"), f"enum values must be of type {kind}: not {wrong!r} (quote them)")
    for keyword in BOUNDS:
        value = node.get(keyword)
        if keyword in node and not (_of_type(value, "number") and math.isfinite(value)):
            yield SchemaProblem((*path, keyword), f"{keyword} must be a finite number, not {value!r}")
        elif keyword == "multipleOf" and keyword in node and value <= 0:
            yield SchemaProblem((*path, keyword), "multipleOf must be more than 0")
    for keyword in COUNTS:
        value = node.get(keyword)
        if keyword in node and not (_of_type(value, "integer") and value >= 0):
            yield SchemaProblem((*path, keyword), f"{keyword} must be a whole number from 0, not {value!r}")


def _of_type(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return kind == "boolean"
    return isinstance(value, VALUE_TYPES[kind])


def _pattern_problems(pattern: Any, path: Path) -> Iterator[SchemaProblem]:
    if not isinstance(pattern, str):
        yield SchemaProblem(path, "pattern must be text")
        return
    if not (pattern.startswith("^") and pattern.endswith("$")):
        yield SchemaProblem(path, "pattern must be written ^...$ (llama.cpp's grammars take no other)")
    if LOOKAROUND.search(pattern):
        yield SchemaProblem(path, "pattern may not use lookarounds ((?=, (?!, (?<=, (?<!)")
    try:
        re.compile(pattern)
    except re.error as e:
        yield SchemaProblem(path, f"pattern is not a regular expression: {e}")


def _object_problems(node: dict, path: Path) -> Iterator[SchemaProblem]:
    properties = node.get("properties")
    if not isinstance(properties, dict) or not properties:
        yield SchemaProblem(path, "an object must list its properties")
        return
    for name in properties:
        if not isinstance(name, str) or not FIELD_NAME.match(name) or name.startswith("model_"):
            yield SchemaProblem(
                (*path, "properties", str(name)),
                f"field name {name!r}: a letter, then letters, digits or _ (not model_...)",
            )
    if any(not isinstance(name, str) for name in properties):
        return
    if node.get("additionalProperties") is not False:
        yield SchemaProblem(path, "an object must say additionalProperties: false")
    required = node.get("required")
    if isinstance(required, list) and not all(isinstance(name, str) for name in required):
        required = None
    if not isinstance(required, list) or set(required) != set(properties):
        missing = sorted(set(properties) - set(required if isinstance(required, list) else []))
        yield SchemaProblem(
            (*path, "required"),
            "every property must be required (make a property that may be missing nullable instead)"
            + (
                f"; not required: {', '.join(missing)}" if missing else "; required names a property that is not listed"
            ),
        )
    for name, subschema in properties.items():
        yield from _node_problems(subschema, (*path, "properties", name))


def result_model(schema: dict, name: str) -> type[BaseModel]:
    """The pydantic model that validates an answer against a schema of the strict subset."""
    return _model(schema, _class_name(name))


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name) if part) or "Result"


def _model(node: dict, name: str) -> type[BaseModel]:
    fields = {
        field: (_annotation(subschema, f"{name}{_class_name(field)}"), Field(description=subschema.get("description")))
        for field, subschema in node["properties"].items()
    }
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


def _annotation(node: dict, name: str) -> Any:
    types, nullable = _types_of(node)
    kind = types[0]
    if "enum" in node:
        annotation: Any = Literal[tuple(node["enum"])]
    elif kind == "object":
        annotation = _model(node, name)
    elif kind == "array":
        item = _annotation(node["items"], f"{name}Item")
        annotation = Annotated[list[item], Field(min_length=node.get("minItems"), max_length=node.get("maxItems"))]
    elif kind == "string":
        base = FORMATS.get(node.get("format", ""), str)
        limits = {
            "pattern": node.get("pattern"),
            "min_length": node.get("minLength"),
            "max_length": node.get("maxLength"),
        }
        annotation = Annotated[base, Field(**limits)] if base is str else base
    elif kind == "boolean":
        annotation = StrictBool
    else:
        bounds = {
            "ge": node.get("minimum"),
            "le": node.get("maximum"),
            "gt": node.get("exclusiveMinimum"),
            "lt": node.get("exclusiveMaximum"),
            "multiple_of": node.get("multipleOf"),
        }
        number = StrictInt if kind == "integer" else float
        annotation = Annotated[number, Field(strict=True, **bounds)]
    return Optional[annotation] if nullable else annotation  # noqa: UP045 - a runtime-built type


def top_level_fields(schema: dict) -> dict[str, str]:
    """Each top-level field and its kind: string, number, integer, boolean, enum, array, object."""
    kinds = {}
    for field, node in schema["properties"].items():
        types, _ = _types_of(node)
        kinds[field] = "enum" if "enum" in node else types[0]
    return kinds


def field_schema(schema: dict, dotted: str) -> dict | None:
    """The schema of ``a`` or ``a.b`` (b a property of a's objects or of its list's items)."""
    node: dict | None = schema
    for part in dotted.split("."):
        if node is None:
            return None
        types, _ = _types_of(node)
        if types and types[0] == "array":
            node = node.get("items")
        node = (node or {}).get("properties", {}).get(part)
    return node
