"""A result as the store keeps it: the model's result with each of its lists cut to the deployment's
limit, and under ``omitted`` how many items each cut list lost (absent when none was cut).

An offline analyser's findings and an LLM's answer alike can be any length. ``omitted`` is added
after validation, so the schema an LLM answers to stays the model's own, strict one.
"""

import json
from typing import NamedTuple

from pydantic import BaseModel

OMITTED_KEY = "omitted"


class StoredResult(NamedTuple):
    result: BaseModel
    omitted: dict[str, int]  # list field -> items not kept


def stored_json(result: BaseModel, max_items: int) -> str:
    """The result as JSON, each top-level list holding at most ``max_items`` items."""
    over = {name: value for name, value in result if isinstance(value, list) and len(value) > max_items}
    if not over:
        return result.model_dump_json()
    kept = result.model_copy(update={name: value[:max_items] for name, value in over.items()})
    omitted = {name: len(value) - max_items for name, value in over.items()}
    # The separators and ensure_ascii of pydantic's own JSON, so results look alike with or without it.
    return json.dumps({**kept.model_dump(mode="json"), OMITTED_KEY: omitted}, ensure_ascii=False, separators=(",", ":"))


def parse_stored(schema: type[BaseModel], result_json: str) -> StoredResult:
    data = json.loads(result_json)
    omitted = data.pop(OMITTED_KEY, None) or {}
    return StoredResult(schema.model_validate(data), omitted)
