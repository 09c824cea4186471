"""A batch: its launch config, its registration in the store, and its split into partitions."""

import enum
from collections import Counter

import dagster as dg
from pydantic import BaseModel, Field

from batch_pipeline.analysis import Partition
from batch_pipeline.context import ProcessingContext
from batch_pipeline.prompts import ResponseFormatMode
from batch_pipeline.sources import PreparedDocument, SourceError, prepare, read_source
from batch_pipeline.store import DocumentStore


class FailurePolicy(enum.Enum):
    """What a run does when some documents fail while the rest complete."""

    succeed = "succeed"
    fail = "fail"


class InlineDocument(dg.Config):
    filename: str
    markdown_content: str


class BatchConfig(dg.Config):
    project: str = Field(description="Records are scoped to a project: same project + same content = same document.")
    source: str | None = Field(
        default=None,
        description="A folder of .md/.markdown/.txt files (searched recursively) or a .jsonl file of "
        "{filename, markdown_content}. Relative paths resolve from the run's working directory.",
    )
    documents: list[InlineDocument] | None = Field(default=None, description="Inline documents, instead of source.")
    context: ProcessingContext
    partition_size: int | None = Field(
        default=None,
        description="Documents per analysis step (one mapped step each). Unset: 500 for ai_model local; "
        "for an LLM, 64 x the llm resource's max_concurrent_requests (4096 by default), so the drain at "
        "each partition's end stays a small share of its time.",
    )
    force: bool = Field(default=False, description="Re-analyse documents that already have a result for this context.")
    max_document_bytes: int = Field(
        default=1_000_000, description="Larger files are not read; they are stored as failed with status too_large."
    )
    on_document_failure: FailurePolicy = Field(
        default=FailurePolicy.succeed,
        description="succeed: the run succeeds and counts failed documents in its metadata; "
        "fail: the run fails after writing the report if any document failed.",
    )

    def problems(self) -> list[str]:
        """Launch checks the Dagster config schema cannot express."""
        found = []
        if not self.project.strip():
            found.append("project must not be empty")
        if not self.context.ai_model.strip():
            found.append("context.ai_model must not be empty (use 'local' for the offline analysers)")
        if self.partition_size is not None and self.partition_size < 1:
            found.append(f"partition_size must be at least 1, got {self.partition_size}")
        if self.max_document_bytes < 1:
            found.append(f"max_document_bytes must be at least 1, got {self.max_document_bytes}")
        return found


class RegisteredBatch(BaseModel):
    project: str
    context: ProcessingContext
    documents: int
    analysable: int
    input_failures: dict[str, int]
    duplicate_files: list[str]
    ignored_files: list[str]
    partitions: int
    on_document_failure: FailurePolicy
    response_format: ResponseFormatMode | None = None


def _dedupe(docs: list[PreparedDocument]) -> tuple[list[PreparedDocument], list[str]]:
    seen: set[str] = set()
    unique, duplicates = [], []
    for doc in docs:
        if doc.document_id in seen:
            duplicates.append(doc.filename)
        else:
            seen.add(doc.document_id)
            unique.append(doc)
    return unique, duplicates


LOCAL_PARTITION_SIZE = 500
# Each partition boundary drains the pipe: measured at about two latencies of lost throughput
# (docs/benchmarks.md). With 64 requests per concurrency slot, a boundary costs about 3 %.
LLM_PARTITION_WAVES = 64


def partition_size_for(config: BatchConfig, max_concurrent_requests: int) -> int:
    if config.partition_size is not None:
        return config.partition_size
    if config.context.is_local:
        return LOCAL_PARTITION_SIZE
    return max(LOCAL_PARTITION_SIZE, LLM_PARTITION_WAVES * max_concurrent_requests)


def needs_llm(store: DocumentStore, run_id: str, partitions: list[Partition]) -> bool:
    """Whether any document would be sent: some document has no cached result for the context.
    When none would, no request is made at all (not even the response-format probe)."""
    if not partitions:
        return False
    if partitions[0].force:
        return True
    wanted = [d for p in partitions for d in p.document_ids]
    return len(store.find_cached(run_id, partitions[0].context.cache_key(), wanted)) < len(wanted)


def register_batch(
    store: DocumentStore,
    run_id: str,
    config: BatchConfig,
    partition_size: int = LOCAL_PARTITION_SIZE,
) -> tuple[RegisteredBatch, list[Partition]]:
    """Read, vet and register the batch's documents; raises SourceError before writing anything."""
    ignored: list[str] = []
    inline = [(d.filename, d.markdown_content) for d in config.documents] if config.documents else None
    raw = read_source(config.source, inline, config.max_document_bytes, ignored)
    docs, duplicates = _dedupe([prepare(config.project, r) for r in raw])
    store.register_batch(run_id, config.project, config.context, docs)

    analysable = [d.document_id for d in docs if d.problem is None]
    size = partition_size
    partitions = [
        Partition(
            index=i // size,
            project=config.project,
            context=config.context,
            document_ids=analysable[i : i + size],
            force=config.force,
        )
        for i in range(0, len(analysable), size)
    ]
    batch = RegisteredBatch(
        project=config.project,
        context=config.context,
        documents=len(docs),
        analysable=len(analysable),
        input_failures=dict(Counter(d.problem.value for d in docs if d.problem)),
        duplicate_files=duplicates,
        ignored_files=ignored,
        partitions=len(partitions),
        on_document_failure=config.on_document_failure,
    )
    return batch, partitions


__all__ = ["BatchConfig", "FailurePolicy", "RegisteredBatch", "SourceError", "register_batch"]
