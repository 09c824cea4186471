"""max_cost_usd in batch mode: each document is reserved at its worst case at the Batch API's price
when its batch is submitted (or adopted from a run that died: already sent, so reserved whatever
the budget says), and settled at what its line really cost when the batch is collected."""

from batch_pipeline.costs.spend import SpendLimit
from batch_pipeline.llm.batch_lines import LineResult
from batch_pipeline.llm.tokens import estimate_request_tokens


class BatchSpend:
    def __init__(self, spend: SpendLimit | None):
        self.spend = spend
        self.reserved: dict[str, float] = {}  # USD held per document sent

    def reserve(self, document_id: str, body: dict) -> None:
        """Raises BudgetExceeded when this document's worst case does not fit."""
        if self.spend is not None:
            self.reserved[document_id] = self.spend.reserve(estimate_request_tokens(body), "batch")

    def reserve_sent(self, document_id: str, body: dict) -> None:
        if self.spend is not None and document_id not in self.reserved:
            self.reserved[document_id] = self.spend.reserve(estimate_request_tokens(body), "batch", force=True)

    def settle(self, document_id: str, result: LineResult | None) -> None:
        """What the line really cost replaces its reservation (lines never executed cost nothing)."""
        if self.spend is None:
            return
        reserved = self.reserved.pop(document_id, 0.0)
        usage = (result.body or {}).get("usage") if result and result.status_code == 200 else None
        if usage is None:
            self.spend.release(reserved)
            return
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        input_tokens, output_tokens = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
        self.spend.settle(reserved, input_tokens, cached, output_tokens, "batch")
