"""Token estimates for rate limiting, offline: bpe-openai ships its tables (tiktoken downloads them)."""

import json
import logging
from functools import cache

logger = logging.getLogger(__name__)

ENCODING_NAME = "o200k_base"
CHARS_PER_TOKEN = 4  # the usual rule of thumb, used only when no tokenizer can be loaded
MESSAGE_OVERHEAD_TOKENS = 4


@cache
def _encoding():
    try:
        import bpe_openai

        return bpe_openai.get_encoding(ENCODING_NAME)
    except Exception as e:  # any failure to load degrades to the character estimate
        logger.warning("No offline tokenizer (%s); estimating tokens as characters / %d", e, CHARS_PER_TOKEN)
        return None


def estimate_tokens(text: str) -> int:
    encoding = _encoding()
    if encoding is None:
        return len(text) // CHARS_PER_TOKEN + 1
    return len(encoding.encode(text))


def estimate_prompt_tokens(messages: list[dict[str, str]]) -> int:
    return sum(estimate_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages)


def estimate_request_tokens(body: dict) -> int:
    """Input tokens of a chat-completion body: its messages and the response format's schema."""
    tokens = estimate_prompt_tokens(body["messages"])
    if fmt := body.get("response_format"):
        tokens += _format_tokens(json.dumps(fmt, sort_keys=True))
    return tokens


@cache
def _format_tokens(serialised: str) -> int:
    return estimate_tokens(serialised)
