"""What a provider billed for one answer, read from the ``usage`` of its chat completion: openai's
CompletionUsage online, the same object as JSON in a Batch API output line."""

from dataclasses import dataclass

from openai.types import CompletionUsage
from pydantic import ValidationError


@dataclass(frozen=True)
class BilledTokens:
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int

    @classmethod
    def of(cls, usage: CompletionUsage | dict | None) -> "BilledTokens | None":
        """None when the answer carries no usage (or, from a Batch API line, one that is not a usage)."""
        if isinstance(usage, dict):
            try:
                usage = CompletionUsage.model_validate(usage)
            except ValidationError:
                return None
        if usage is None:
            return None
        details = usage.prompt_tokens_details
        cached = (details.cached_tokens or 0) if details else 0
        return cls(usage.prompt_tokens or 0, cached, usage.completion_tokens or 0)
