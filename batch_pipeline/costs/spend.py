"""max_cost_usd during a run: a request is sent only if the run's spend so far plus every request
in flight, each at its worst case (estimated input plus max_output_tokens), stays within the
budget; once answered, its reservation becomes what it really cost."""

from batch_pipeline.costs.prices import ModelPrice, estimate_cost
from batch_pipeline.store import DocumentStore
from batch_pipeline.store.run_budgets import open_run_budget, reserve, settle

# Token estimates are offline and miss what the provider adds (chat framing, its own tokenizer's
# differences): the worst case takes a margin on top of the messages and the response format.
INPUT_MARGIN = 1.25
INPUT_MARGIN_TOKENS = 64


class BudgetExceeded(Exception):
    """Sending this request could take the run's spend past max_cost_usd."""


class SpendLimit:
    def __init__(
        self, store: DocumentStore, run_id: str, max_cost_usd: float, price: ModelPrice, max_output_tokens: int
    ):
        self.store, self.run_id, self.max_cost_usd = store, run_id, max_cost_usd
        self.price, self.max_output_tokens = price, max_output_tokens
        open_run_budget(store, run_id, max_cost_usd)

    def worst_case(self, estimated_input_tokens: int, llm_api: str = "online") -> float:
        input_tokens = int(estimated_input_tokens * INPUT_MARGIN) + INPUT_MARGIN_TOKENS
        return estimate_cost(self.price, input_tokens, 0, self.max_output_tokens, llm_api) or 0.0

    def reserve(self, estimated_input_tokens: int, llm_api: str = "online", force: bool = False) -> float:
        """The USD reserved for one request; raises BudgetExceeded when it does not fit (force: a
        request already sent, reserved whether it fits or not)."""
        usd = self.worst_case(estimated_input_tokens, llm_api)
        if not reserve(self.store, self.run_id, usd, force):
            raise BudgetExceeded(
                f"not sent: at its worst case (${usd:.6f}) it could take the run's spend past max_cost_usd "
                f"(${self.max_cost_usd}); run the batch again with a higher max_cost_usd to finish it from the cache"
            )
        return usd

    def settle(
        self,
        reserved_usd: float,
        input_tokens: int,
        cached_input_tokens: int,
        output_tokens: int,
        llm_api: str = "online",
    ) -> None:
        cost = estimate_cost(self.price, input_tokens, cached_input_tokens, output_tokens, llm_api) or 0.0
        settle(self.store, self.run_id, reserved_usd, cost)

    def release(self, reserved_usd: float) -> None:
        """The request was refused (HTTP 429, 5xx): nothing was billed."""
        settle(self.store, self.run_id, reserved_usd, 0.0)

    def keep(self, reserved_usd: float) -> None:
        """No answer came back (timeout, lost connection): it may have been billed, at worst this much."""
        settle(self.store, self.run_id, reserved_usd, reserved_usd)
