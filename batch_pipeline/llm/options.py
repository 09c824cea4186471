"""What the LLM backend is configured with. LlmOptions: what a launch may tune (the `llm`
resource's run config, derived from this model, declared here once with defaults and
descriptions); LlmSettings: those plus what only the deployment decides (the key, the endpoint as
allowed, the pace state)."""

from pydantic import BaseModel, Field, SecretStr

from batch_pipeline.llm.response_format import ResponseFormatMode

# Answers already paid for are worth waiting for, within Kubernetes' default 30 s between SIGTERM and SIGKILL.
STOP_GRACE_SECONDS = 20.0


class LlmOptions(BaseModel):
    """An OpenAI-compatible chat-completions provider. The key is always $OPENAI_API_KEY (never run
    config); the endpoint is $OPENAI_BASE_URL or one the deployment allows; the shared pace's
    Redis is $BATCH_PIPELINE_RATE_LIMIT_URL."""

    base_url: str | None = Field(
        default=None,
        description="Unset: $OPENAI_BASE_URL, else api.openai.com. Otherwise one of the endpoints the deployment "
        "lists in $BATCH_PIPELINE_LLM_BASE_URLS; any other is refused before a request is sent.",
    )
    timeout_seconds: float = Field(default=60.0, description="Per-request timeout.")
    max_concurrent_requests: int = Field(default=64, description="Requests in flight at once, per partition step.")
    requests_per_minute: int | None = Field(
        default=None,
        description="The provider's requests-per-minute limit for this model and key. Unset: learned from the "
        "provider's x-ratelimit-* headers, else from its 429s.",
    )
    tokens_per_minute: int | None = Field(
        default=None,
        description="The provider's tokens-per-minute limit for this model and key. Unset: learned from the "
        "provider's x-ratelimit-* headers.",
    )
    max_attempts: int = Field(
        default=5,
        description="Attempts per request before a document fails on 5xx answers, timeouts or connection "
        "errors. HTTP 429s do not count: they are bounded by rate_limit_wait_seconds.",
    )
    rate_limit_wait_seconds: float = Field(
        default=600.0,
        description="How long one request may keep waiting on HTTP 429s (the provider's pacing) before its "
        "document ends rate_limited; re-running the batch then finishes it from the cache.",
    )
    retry_max_wait_seconds: float = Field(
        default=30.0,
        description="Longest wait between two attempts after a timeout or a 5xx (exponential backoff with "
        "jitter, starting at 0.5 s). A 429 waits as long as the provider asks instead.",
    )
    max_output_tokens: int = Field(default=4096, description="max_tokens of every completion.")
    max_repairs: int = Field(
        default=2,
        description="Repair requests (the answer and what is wrong with it, asking for a corrected one) for an "
        "answer that is not valid JSON for the schema, before the document ends invalid_output.",
    )
    response_format: ResponseFormatMode = Field(
        default=ResponseFormatMode.auto,
        description="auto: probe once per run, before any document, for the richest mode the server accepts: "
        "strict json_schema, else json_object+schema, json_object, prompt only.",
    )

    batch_poll_max_seconds: float = Field(
        default=60.0,
        description="llm_api batch: longest wait between two looks at a batch's status (from 1 s, growing 1.5x).",
    )
    batch_resubmissions: int = Field(
        default=2,
        description="llm_api batch: how many times the documents of a batch that expired or was cancelled "
        "unanswered are sent again in a new batch, before they end batch_expired.",
    )
    stop_grace_seconds: float = Field(
        default=STOP_GRACE_SECONDS,
        description="On SIGTERM or SIGINT nothing new is sent; answers to the requests already in flight are "
        "awaited this long and stored, the rest of the run is marked interrupted for `batch-pipeline resume`.",
    )


class LlmSettings(LlmOptions):
    api_key: SecretStr | None = None  # SecretStr: never shown in a repr, a log line or an error
    rate_limit_url: str | None = None
