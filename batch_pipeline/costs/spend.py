"""max_cost_usd during a run: a request is sent only if, right before it goes out, the run's spend
so far plus every request in flight, each at its worst case (estimated input plus
max_output_tokens), stays within the budget, and the spend has not reached it; once answered, its
reservation becomes what it really cost.

The reservation is held in a ``with`` block around sending (``SpendLimit.hold``), taken once the
request's rate-limit slot has come (requests waiting for theirs hold nothing): however the request
ends — answered, refused, timed out, cancelled — it is settled, released or kept; none is left
behind to starve the rest of the run.

A resumed run draws on the budget of the run it resumes (the run's budget_of_run tag names it): a run and its
resumes share one max_cost_usd."""

from batch_pipeline.costs.prices import ModelPrice, estimate_cost
from batch_pipeline.costs.usage import BilledTokens
from batch_pipeline.outcome import LlmApi
from batch_pipeline.store import DocumentStore
from batch_pipeline.store.run_budgets import fits, open_run_budget, reserve, settle

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
        """run_id: the run whose budget this is (for a resumed run, the run it resumes)."""
        self.store, self.run_id, self.max_cost_usd = store, run_id, max_cost_usd
        self.price, self.max_output_tokens = price, max_output_tokens
        open_run_budget(store, run_id, max_cost_usd)

    def worst_case(self, estimated_input_tokens: int, llm_api: LlmApi = LlmApi.online) -> float:
        input_tokens = int(estimated_input_tokens * INPUT_MARGIN) + INPUT_MARGIN_TOKENS
        return estimate_cost(self.price, input_tokens, 0, self.max_output_tokens, llm_api) or 0.0

    def reserve(self, estimated_input_tokens: int, llm_api: LlmApi = LlmApi.online) -> float:
        """The USD reserved for one request; raises BudgetExceeded when it does not fit."""
        usd = self.worst_case(estimated_input_tokens, llm_api)
        if not reserve(self.store, self.run_id, usd, cap=self.max_cost_usd):
            raise self._exceeded(usd)
        return usd

    def _exceeded(self, usd: float) -> BudgetExceeded:
        return BudgetExceeded(self.exceeded(usd))

    def exceeded(self, usd: float) -> str:
        """Why a request whose worst case is usd was not sent."""
        return (
            f"not sent: at its worst case (${usd:.6f}) it could take the run's spend past max_cost_usd "
            f"(${self.max_cost_usd}); run the batch again with a higher max_cost_usd to finish it from the cache"
        )

    def check_fits(self, estimated_input_tokens: int, llm_api: LlmApi = LlmApi.online) -> None:
        """Raises BudgetExceeded when the request's worst case does not fit now (reserves nothing)."""
        usd = self.worst_case(estimated_input_tokens, llm_api)
        if not fits(self.store, self.run_id, usd, cap=self.max_cost_usd):
            raise self._exceeded(usd)

    def hold(self, estimated_input_tokens: int, llm_api: LlmApi = LlmApi.online) -> "Hold":
        """One request's reservation, for a with block around sending it; raises BudgetExceeded."""
        return Hold(self, self.reserve(estimated_input_tokens, llm_api), llm_api)

    def cost_of(self, billed: BilledTokens, llm_api: LlmApi = LlmApi.online) -> float:
        return (
            estimate_cost(self.price, billed.input_tokens, billed.cached_input_tokens, billed.output_tokens, llm_api)
            or 0.0
        )


class Hold:
    """A request's reservation until the with block ends: settled at the answer's usage, released when
    the provider refused it or it was never sent, kept at its worst case when it was sent and no
    usage is known (it may have been billed). Hold(None): no budget, nothing to do."""

    def __init__(self, spend: SpendLimit | None, usd: float = 0.0, llm_api: LlmApi = LlmApi.online):
        self._spend, self._usd, self._llm_api = spend, usd, llm_api
        self._open = spend is not None
        self.sent = False  # set just before the request goes out: from then on it may be billed

    def __enter__(self) -> "Hold":
        return self

    def __exit__(self, *exc) -> None:
        if self.sent:
            self.keep()
        else:
            self.release()

    def settle(self, usage) -> None:
        """What the answer cost, from its ``usage`` (openai's CompletionUsage); None: the worst case."""
        billed = BilledTokens.of(usage)
        if not self._open or billed is None:
            self.keep()
            return
        self._close(self._spend.cost_of(billed, self._llm_api))

    def release(self) -> None:
        """Not billed: never sent, or refused (HTTP 429, 5xx, 4xx)."""
        self._close(0.0)

    def keep(self) -> None:
        self._close(self._usd)

    def _close(self, cost: float) -> None:
        if self._open:
            # Closed once the store has it: a failed write leaves the hold to be kept at its worst case on exit.
            settle(self._spend.store, self._spend.run_id, self._usd, cost)
            self._open = False
