"""What a provider billed for one answer, read from the ``usage`` of its chat completion: openai's
CompletionUsage online, the same object as JSON in a Batch API output line."""

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only its type: budgets are checked in processes that never load the openai SDK
    from openai.types import CompletionUsage


@dataclass(frozen=True)
class BilledTokens:
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int

    @classmethod
    def of(cls, usage: "CompletionUsage | dict | None") -> "BilledTokens | None":
        """None when the answer carries no usage."""
        if isinstance(usage, dict):  # a Batch API line: read what is there, as the provider billed it
            details = usage.get("prompt_tokens_details")
            cached = details.get("cached_tokens") if isinstance(details, dict) else None
            return cls(_count(usage.get("prompt_tokens")), _count(cached), _count(usage.get("completion_tokens")))
        if usage is None:
            return None
        details = usage.prompt_tokens_details
        cached = (details.cached_tokens or 0) if details else 0
        return cls(usage.prompt_tokens or 0, cached, usage.completion_tokens or 0)


def _count(value) -> int:
    return value if isinstance(value, int) and value > 0 else 0
