"""A batch: its registration in the store, and its split into partitions."""

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from batch_pipeline import settings
from batch_pipeline.batch.partitions import Partition
from batch_pipeline.batch.request import BatchRequest, FailurePolicy, RunChecks
from batch_pipeline.context import PinnedContext
from batch_pipeline.conversion.limits import Conversion, ConversionLimits
from batch_pipeline.documents.sources import RawDocument, read_source
from batch_pipeline.documents.vetting import PreparedDocument, document_id, prepare
from batch_pipeline.llm.batch_lines import MAX_REQUESTS_PER_BATCH
from batch_pipeline.llm.response_format import ResponseFormatMode
from batch_pipeline.outcome import LlmApi
from batch_pipeline.store import DocumentStore


class RegisteredBatch(BaseModel):
    project: str
    context: PinnedContext
    documents: int
    analysable: int
    converted_files: int  # PDFs, Office files, e-mails, scans turned into markdown (or found converted)
    input_failures: dict[str, int]
    duplicate_files: list[str]
    ignored_files: list[str]
    skipped_entries: list[str]  # "name: reason" for each folder entry that was not read
    partitions: int
    on_document_failure: FailurePolicy
    checks: RunChecks = RunChecks()  # with the deployment's lines filled in
    response_format: ResponseFormatMode | None = None


def _dedupe(raws: list[RawDocument]) -> tuple[list[RawDocument], list[str]]:
    """Same bytes, same document: the first file of each content is kept (and converted once)."""
    seen: set[str] = set()
    unique, duplicates = [], []
    for raw in raws:
        if raw.content_hash in seen:
            duplicates.append(raw.filename)
        else:
            seen.add(raw.content_hash)
            unique.append(raw)
    return unique, duplicates


LOCAL_PARTITION_SIZE = 500
# Each partition boundary drains the pipe: measured at about two latencies of lost throughput
# (docs/benchmarks.md). With 128 requests per concurrency slot, a boundary costs about 1.5 %.
LLM_PARTITION_WAVES = 128


def partition_size_for(request: BatchRequest, max_concurrent_requests: int) -> int:
    if request.partition_size is not None:
        return request.partition_size
    if request.context.is_local:
        return LOCAL_PARTITION_SIZE
    if request.llm_api is LlmApi.batch:
        return MAX_REQUESTS_PER_BATCH  # one step polls one batch
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


@dataclass
class ReadBatch:
    """A batch's documents, read and vetted, not yet written anywhere."""

    docs: list[PreparedDocument]
    duplicates: list[str]
    ignored: list[str]
    skipped: list[str]


# document ids -> the conversions the store already holds for them
StoredConversions = Callable[[Sequence[str]], dict[str, Conversion]]


def _conversions(
    request: BatchRequest, raws: list[RawDocument], stored: StoredConversions | None
) -> dict[str, Conversion]:
    """content_hash -> conversion for each file to convert: as stored by an earlier run, else
    converted now, in worker processes (one per core)."""
    files = {document_id(request.project, r.content_hash): r for r in raws if r.convert_as and r.problem is None}
    if not files:
        return {}
    # The converters' libraries (PDF, Office, images; about half a second) load only for a batch with files.
    from batch_pipeline.conversion.pool import convert_files

    known = stored(list(files)) if stored else {}
    conversions = {files[doc_id].content_hash: conversion for doc_id, conversion in known.items()}
    to_convert = [r for doc_id, r in files.items() if doc_id not in known]
    limits = ConversionLimits(
        request.max_pages,
        request.conversion_timeout_seconds,
        request.ocr_languages,
        memory_mb=settings.conversion_memory_mb(),
    )
    converted = convert_files([(r.content or b"", r.convert_as or "") for r in to_convert], limits)
    conversions.update((r.content_hash, c) for r, c in zip(to_convert, converted, strict=True))
    return conversions


def read_batch(request: BatchRequest, stored: StoredConversions | None = None) -> ReadBatch:
    """Read, convert and vet the batch's documents; raises SourceError. Writes nothing."""
    contents = read_source(
        request.source,
        request.inline_documents,
        request.max_document_bytes,
        request.follow_symlinks,
        request.max_file_bytes,
    )
    raws, duplicates = _dedupe(contents.documents)
    conversions = _conversions(request, raws, stored)
    docs = [prepare(request.project, r, conversions.get(r.content_hash), request.max_document_bytes) for r in raws]
    return ReadBatch(
        docs=docs, duplicates=duplicates, ignored=contents.ignored, skipped=[str(e) for e in contents.skipped]
    )


def register_batch(
    store: DocumentStore,
    run_id: str,
    request: BatchRequest,
    partition_size: int = LOCAL_PARTITION_SIZE,
    read: ReadBatch | None = None,
) -> tuple[RegisteredBatch, list[Partition]]:
    """Register the batch's documents (read now unless already read); raises SourceError before writing anything."""
    read = read or read_batch(request)
    docs = read.docs
    context = request.pinned_context
    store.register_batch(run_id, request.project, context, docs)

    analysable = [d.document_id for d in docs if d.problem is None]
    size = partition_size
    partitions = [
        Partition(
            index=i // size,
            project=request.project,
            context=context,
            document_ids=analysable[i : i + size],
            force=request.force,
            analysis_timeout_seconds=request.analysis_timeout_seconds,
            llm_api=request.llm_api,
            max_cost_usd=request.max_cost_usd,
        )
        for i in range(0, len(analysable), size)
    ]
    batch = RegisteredBatch(
        project=request.project,
        context=context,
        documents=len(docs),
        analysable=len(analysable),
        converted_files=sum(d.converter is not None for d in docs),
        input_failures=dict(Counter(d.problem.value for d in docs if d.problem)),
        duplicate_files=read.duplicates,
        ignored_files=read.ignored,
        skipped_entries=read.skipped,
        partitions=len(partitions),
        on_document_failure=request.on_document_failure,
        checks=request.checks.with_deployment_lines(),
    )
    return batch, partitions
