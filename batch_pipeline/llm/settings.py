"""LlmSettings: everything the LLM backend is configured with, as the `llm` resource passes it down
(the resource holds the defaults and their descriptions)."""

from pydantic import BaseModel, SecretStr

from batch_pipeline.llm.response_format import ResponseFormatMode

# Answers already paid for are worth waiting for, within Kubernetes' default 30 s between SIGTERM and SIGKILL.
STOP_GRACE_SECONDS = 20.0


class LlmSettings(BaseModel):
    api_key: SecretStr | None = None  # SecretStr: never shown in a repr, a log line or an error
    base_url: str | None = None
    timeout_seconds: float
    max_concurrent_requests: int
    rate_limit_url: str | None = None
    requests_per_minute: int | None
    tokens_per_minute: int | None
    max_attempts: int
    rate_limit_wait_seconds: float
    retry_max_wait_seconds: float
    max_output_tokens: int
    max_repairs: int
    response_format: ResponseFormatMode
    batch_poll_max_seconds: float
    batch_resubmissions: int
    stop_grace_seconds: float = STOP_GRACE_SECONDS
