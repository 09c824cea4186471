"""How a document's analysis ends: one status enum for every layer, and the outcome record the store keeps."""

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class LlmApi(StrEnum):
    """How documents reach the provider: one request each, or in Batch API files (about half price,
    answered within 24 h)."""

    online = "online"
    batch = "batch"


class DocumentStatus(StrEnum):
    """A document's status in a run (docs/guide/how-a-run-works.md, "Failed documents", explains each)."""

    pending = "pending"  # registered, not analysed yet
    ok = "ok"
    interrupted = "interrupted"  # its run died and was resumed
    # Found at registration: the document cannot be analysed.
    empty = "empty"
    unreadable = "unreadable"
    too_large = "too_large"
    invalid_record = "invalid_record"
    conversion_failed = "conversion_failed"  # a PDF, Office file, e-mail or scan that could not be converted
    # The offline analysers.
    analysis_error = "analysis_error"
    analysis_timeout = "analysis_timeout"  # over analysis_timeout_seconds (any analyser)
    # The LLM backend.
    invalid_output = "invalid_output"
    refused = "refused"
    truncated = "truncated"
    rate_limited = "rate_limited"
    provider_error = "provider_error"
    request_error = "request_error"
    batch_expired = "batch_expired"  # the Batch API did not answer it in time, re-submissions included
    # Not sent: the Redis pacing every process's requests stopped answering (not the provider's fault).
    pace_state_unavailable = "pace_state_unavailable"
    # Cost controls.
    budget_exceeded = "budget_exceeded"  # not sent: it could have taken the run's spend past max_cost_usd


def count_failed(status_counts: dict[str, int]) -> int:
    """Documents that ended in a failure status, from a status -> count mapping."""
    return sum(n for status, n in status_counts.items() if status not in (DocumentStatus.ok, DocumentStatus.pending))


class AnalysisOutcome(BaseModel):
    """How one document's analysis ended, as the store records it."""

    model_config = ConfigDict(use_enum_values=True)  # the store and the drivers see plain strings

    status: DocumentStatus
    error: str = ""
    result: str | None = None  # the analysis as JSON
    raw_output: str | None = None
    input_tokens: int | None = None
    cached_input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    attempts: int | None = None
    request_id: str | None = None
    answered_by_model: str | None = None
    llm_api: LlmApi | None = None  # the Batch API's price or the online one, for an LLM answer


FAILURE_RATE_CHECK = "failure_rate"
LABELLED_SCORE_CHECK = "labelled_score"


class CheckOutcome(BaseModel):
    """How one of a run's checks ended (the asset checks of analysed_documents): what it measured,
    the line it had to keep, and whether the run kept it. With no line the check only measures."""

    name: str  # FAILURE_RATE_CHECK or LABELLED_SCORE_CHECK
    passed: bool
    value: float | None  # the failure rate or the overall score; None: nothing to measure
    threshold: float | None
    description: str
