"""One chat-completion request as the openai client takes it, and what its errors mean."""

import openai

from batch_pipeline.analysis.analysis import Analysis
from batch_pipeline.llm.response_format import ResponseFormatMode, response_format
from batch_pipeline.outcome import DocumentStatus


def completion_request(
    model: Analysis, ai_model: str, messages: list[dict[str, str]], mode: ResponseFormatMode, max_tokens: int
) -> dict:
    """Keyword arguments for chat.completions.create.

    The messages and the response format go as they are, through extra_body (which the client
    merges over the body): its recursive parameter transform of typed dicts cost more CPU than
    the rest of the request (a 170-node JSON schema), then 15 % of the analysis step's (messages)."""
    extra_body: dict = {"messages": messages}
    if (fmt := response_format(model, mode)) is not None:
        extra_body["response_format"] = fmt
    return {"model": ai_model, "messages": [], "max_tokens": max_tokens, "extra_body": extra_body}


def sent_body(request: dict) -> dict:
    """The JSON body the client sends for these chat.completions.create arguments (extra_body merged in)."""
    body = {key: value for key, value in request.items() if key != "extra_body"}
    body.update(request.get("extra_body") or {})
    return body


def retryable(error: BaseException) -> bool:
    if isinstance(error, openai.RateLimitError | openai.APITimeoutError | openai.APIConnectionError):
        return True
    return isinstance(error, openai.APIStatusError) and error.status_code >= 500


def rejects_format(error: openai.APIStatusError) -> bool:
    """Whether an error answer says the server does not take the requested response format.
    llama.cpp's Python server answers HTTP 500 naming response_format; most others 400 or 422."""
    text = f"{error.message} {error.body}".lower()
    if error.status_code in (400, 422):
        return any(word in text for word in ("response_format", "json", "schema", "format"))
    return error.status_code >= 500 and "response_format" in text


def failure_status(error: BaseException) -> DocumentStatus:
    if isinstance(error, openai.RateLimitError):
        return DocumentStatus.rate_limited
    if retryable(error):
        return DocumentStatus.provider_error
    return DocumentStatus.request_error


class StillRateLimited(Exception):
    """HTTP 429s kept a request waiting longer than rate_limit_wait_seconds: given up."""

    def __init__(self, waited_seconds: float, last: openai.RateLimitError):
        super().__init__(
            f"still HTTP 429 after {waited_seconds:.0f} s of waiting (rate_limit_wait_seconds): {last.message}"[:1000]
        )


def describe(error: BaseException) -> str:
    if isinstance(error, openai.APIStatusError):
        return f"HTTP {error.status_code} from the provider: {error.message}"[:1000]
    return f"{type(error).__name__}: {error}"[:1000]
