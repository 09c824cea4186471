"""max_cost_usd in batch mode: a provider batch's documents are reserved at their worst case at the
Batch API's price when it is recorded, in the same transaction that claims them; the reservation
stays with the record (a run that dies leaves it there, and whichever run collects the batch
settles it at what its lines really cost, once; an abandoned record releases it)."""

from collections.abc import Mapping

from batch_pipeline.costs.prices import ModelPrice, estimate_cost, price_for, price_table
from batch_pipeline.costs.spend import SpendLimit
from batch_pipeline.costs.usage import BilledTokens
from batch_pipeline.llm.batch_lines import LineResult
from batch_pipeline.llm.tokens import estimate_request_tokens
from batch_pipeline.outcome import LlmApi
from batch_pipeline.store.provider_batches import BatchBudget


def batch_budget(spend: SpendLimit | None, bodies: Mapping[str, dict]) -> BatchBudget | None:
    """What record_preparing reserves these documents in (None: the run has no max_cost_usd)."""
    if spend is None:
        return None
    worst = {d: spend.worst_case(estimate_request_tokens(body), LlmApi.batch) for d, body in bodies.items()}
    return BatchBudget(spend.run_id, spend.max_cost_usd, worst)


def price_of(spend: SpendLimit | None, ai_model: str) -> ModelPrice | None:
    """The price a batch's lines are settled at: the run's budget's, else the price table's (a
    run without max_cost_usd may collect a batch that a run with one sent)."""
    return spend.price if spend is not None else price_for(ai_model, price_table())


def lines_cost(price: ModelPrice | None, results: Mapping[str, LineResult]) -> float | None:
    """What the batch's lines cost at the Batch API's price (lines never executed cost nothing);
    None when the model has no price."""
    if price is None:
        return None
    total = 0.0
    for result in results.values():
        usage = (result.body or {}).get("usage") if result.status_code == 200 else None
        if billed := BilledTokens.of(usage):
            cost = estimate_cost(
                price, billed.input_tokens, billed.cached_input_tokens, billed.output_tokens, LlmApi.batch
            )
            total += cost or 0.0
    return total
