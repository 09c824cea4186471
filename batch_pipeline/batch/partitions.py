"""A partition: the unit of analysis (one mapped step), and what its analysis reports back."""

from pydantic import BaseModel

from batch_pipeline.batch.request import BatchRequest
from batch_pipeline.context import PinnedContext
from batch_pipeline.llm.response_format import ResponseFormatMode
from batch_pipeline.outcome import LlmApi


class Partition(BaseModel):
    """A slice of a batch: document ids plus the context they are analysed under (with the
    analysis definition pinned at launch)."""

    index: int
    project: str
    context: PinnedContext
    document_ids: list[str]
    force: bool = False
    analysis_timeout_seconds: float = BatchRequest.model_fields["analysis_timeout_seconds"].default
    response_format: ResponseFormatMode | None = None  # settled before the fan-out; None for local
    llm_api: LlmApi = LlmApi.online
    max_cost_usd: float | None = None  # the run's whole budget, shared by its partitions
    budget_run_id: str | None = None  # whose budget that is, when not the run's own (it resumes that run)


class PartitionSummary(BaseModel):
    index: int
    documents: int
    status_counts: dict[str, int]
    cached: int
    skipped_already_done: int
    seconds: float
