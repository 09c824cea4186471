"""Estimated cost: a price table in USD per million tokens, overridable with a YAML/JSON file.

Set ``BATCH_PIPELINE_PRICES`` to a file mapping model names to ``{input, cached_input, output}``;
its entries replace or extend the defaults below. A model matches the longest table entry its
name starts with (``gpt-4o-mini-2024-07-18`` matches ``gpt-4o-mini``).
"""

import os
from pathlib import Path

import yaml
from pydantic import BaseModel

PRICES_ENV = "BATCH_PIPELINE_PRICES"


class ModelPrice(BaseModel):
    input: float
    cached_input: float | None = None  # None: cached input tokens cost the same as input
    output: float


# Published list prices (USD / 1M tokens) when this table was written; check your provider's.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "gpt-4o": ModelPrice(input=2.50, cached_input=1.25, output=10.00),
    "gpt-4o-mini": ModelPrice(input=0.15, cached_input=0.075, output=0.60),
    "gpt-4.1": ModelPrice(input=2.00, cached_input=0.50, output=8.00),
    "gpt-4.1-mini": ModelPrice(input=0.40, cached_input=0.10, output=1.60),
    "gpt-4.1-nano": ModelPrice(input=0.10, cached_input=0.025, output=0.40),
    "local": ModelPrice(input=0, cached_input=0, output=0),
}


def price_table() -> dict[str, ModelPrice]:
    table = dict(DEFAULT_PRICES)
    if path := os.environ.get(PRICES_ENV):
        overrides = yaml.safe_load(Path(path).read_text()) or {}
        table.update({model: ModelPrice(**price) for model, price in overrides.items()})
    return table


def price_for(model: str, table: dict[str, ModelPrice]) -> ModelPrice | None:
    matches = [name for name in table if model == name or model.startswith(f"{name}-")]
    return table[max(matches, key=len)] if matches else None


def estimate_cost(
    price: ModelPrice | None, input_tokens: int, cached_input_tokens: int, output_tokens: int
) -> float | None:
    if price is None:
        return None
    cached_rate = price.input if price.cached_input is None else price.cached_input
    uncached = max(input_tokens - cached_input_tokens, 0)
    return (uncached * price.input + cached_input_tokens * cached_rate + output_tokens * price.output) / 1_000_000
