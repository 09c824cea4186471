"""Estimated cost: a price table in USD per million tokens, overridable with a YAML/JSON file.

Set ``BATCH_PIPELINE_PRICES`` to a file mapping model names to ``{input, cached_input, output}``
(and, where the provider's Batch API has its own prices, ``batch_input`` and ``batch_output``);
its entries replace or extend the defaults below. A model matches the longest table entry its
name starts with (``gpt-4o-mini-2024-07-18`` matches ``gpt-4o-mini``).
"""

import os
from pathlib import Path

import yaml
from pydantic import BaseModel

from batch_pipeline.outcome import LlmApi

PRICES_ENV = "BATCH_PIPELINE_PRICES"


class ModelPrice(BaseModel):
    input: float
    cached_input: float | None = None  # None: cached input tokens cost the same as input
    output: float
    # The Batch API's prices; None: the table has none for this model (priced as online, to be safe).
    batch_input: float | None = None
    batch_cached_input: float | None = None  # None: cached input costs batch_input in the Batch API
    batch_output: float | None = None

    def rates(self, llm_api: LlmApi = LlmApi.online) -> tuple[float, float, float]:
        """USD per million (uncached input, cached input, output) tokens through this API."""
        cached = self.input if self.cached_input is None else self.cached_input
        if llm_api != LlmApi.batch or self.batch_input is None or self.batch_output is None:
            return self.input, cached, self.output
        batch_cached = self.batch_input if self.batch_cached_input is None else self.batch_cached_input
        return self.batch_input, batch_cached, self.batch_output


# Published list prices (USD / 1M tokens) when this table was written; check your provider's.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "gpt-4o": ModelPrice(input=2.50, cached_input=1.25, output=10.00, batch_input=1.25, batch_output=5.00),
    "gpt-4o-mini": ModelPrice(input=0.15, cached_input=0.075, output=0.60, batch_input=0.075, batch_output=0.30),
    "gpt-4.1": ModelPrice(input=2.00, cached_input=0.50, output=8.00, batch_input=1.00, batch_output=4.00),
    "gpt-4.1-mini": ModelPrice(input=0.40, cached_input=0.10, output=1.60, batch_input=0.20, batch_output=0.80),
    "gpt-4.1-nano": ModelPrice(input=0.10, cached_input=0.025, output=0.40, batch_input=0.05, batch_output=0.20),
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
    price: ModelPrice | None,
    input_tokens: int,
    cached_input_tokens: int,
    output_tokens: int,
    llm_api: LlmApi = LlmApi.online,
) -> float | None:
    if price is None:
        return None
    uncached_rate, cached_rate, output_rate = price.rates(llm_api)
    uncached = max(input_tokens - cached_input_tokens, 0)
    return (uncached * uncached_rate + cached_input_tokens * cached_rate + output_tokens * output_rate) / 1_000_000
