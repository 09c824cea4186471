"""How the answer's JSON shape is requested: the modes, richest first, and the request field each
sends (the analysis's output schema, strict by construction: analysis/json_schema.py)."""

import enum
from functools import cache

from batch_pipeline.analysis.analysis import Analysis


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


@cache
def _response_format(model: Analysis, mode: ResponseFormatMode) -> dict | None:
    if mode is ResponseFormatMode.json_schema:
        return {"type": "json_schema", "json_schema": {"name": model.key, "schema": model.json_schema, "strict": True}}
    if mode is ResponseFormatMode.json_object_schema:
        return {"type": "json_object", "schema": model.json_schema}
    if mode is ResponseFormatMode.json_object:
        return {"type": "json_object"}
    return None


def response_format(model: Analysis, mode: ResponseFormatMode) -> dict | None:
    """The response_format request field for a mode (cached: read-only)."""
    return _response_format(model, mode)
