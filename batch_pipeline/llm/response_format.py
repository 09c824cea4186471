"""How the answer's JSON shape is requested: the modes, richest first, and the strict schema they send."""

import enum
from functools import cache

from pydantic import BaseModel

from batch_pipeline.analysis import AnalysisModel


class ResponseFormatMode(enum.Enum):
    """How the answer's JSON shape is requested, richest first."""

    auto = "auto"  # start with json_schema and fall back on the first rejection
    json_schema = "json_schema"  # OpenAI structured outputs (strict)
    json_object_schema = "json_object_schema"  # llama.cpp: {"type": "json_object", "schema": ...}
    json_object = "json_object"  # plain JSON mode, schema in the prompt
    prompt_only = "prompt_only"  # no response_format; schema in the prompt


FALLBACK_ORDER = [
    ResponseFormatMode.json_schema,
    ResponseFormatMode.json_object_schema,
    ResponseFormatMode.json_object,
    ResponseFormatMode.prompt_only,
]


# Keywords whose value is a map of names to subschemas, and those whose value is a subschema or a list of them.
SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
SUBSCHEMAS = ("items", "additionalProperties", "not", "anyOf", "allOf", "oneOf", "prefixItems")


@cache
def strict_schema(result_schema: type[BaseModel]) -> dict:
    """The result schema in the form strict structured outputs require: the openai SDK's own
    converter (every property required, no additional properties, refs inlined where needed),
    then without ``default`` keywords, which strict mode rejects ("'default' is not permitted")
    but the converter keeps unless they are null. Cached per schema: treat it as read-only."""
    import openai  # here, not at the top: a run of the offline analysers never loads the SDK (0.6 s)

    schema = openai.pydantic_function_tool(result_schema)["function"]["parameters"]
    _drop_defaults(schema)
    return schema


def _drop_defaults(node: dict) -> None:
    """Remove the ``default`` keyword from a schema node and its subschemas. A *property* named
    ``default`` is a key of ``properties``, not a keyword, and stays."""
    node.pop("default", None)
    for keyword in SCHEMA_MAPS:
        for subschema in (node.get(keyword) or {}).values():
            _drop_defaults(subschema)
    for keyword in SUBSCHEMAS:
        value = node.get(keyword)
        for subschema in value if isinstance(value, list) else [value]:
            if isinstance(subschema, dict):
                _drop_defaults(subschema)


@cache
def _response_format(model: AnalysisModel, mode: ResponseFormatMode) -> dict | None:
    if mode is ResponseFormatMode.json_schema:
        schema = strict_schema(model.result_schema)
        return {"type": "json_schema", "json_schema": {"name": model.key, "schema": schema, "strict": True}}
    if mode is ResponseFormatMode.json_object_schema:
        return {"type": "json_object", "schema": strict_schema(model.result_schema)}
    if mode is ResponseFormatMode.json_object:
        return {"type": "json_object"}
    return None


def response_format(model: AnalysisModel, mode: ResponseFormatMode) -> dict | None:
    """The response_format request field for a mode (cached: read-only)."""
    return _response_format(model, mode)
