"""Analysing one partition of documents: cache look-up, concurrent analysis, one store write per
document, through an Analyser (the offline analysers here; the LLM's in ``batch_pipeline.llm``)."""

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from batch_pipeline.batch.partitions import Partition, PartitionSummary
from batch_pipeline.context import ProcessingContext
from batch_pipeline.outcome import AnalysisOutcome, DocumentStatus
from batch_pipeline.store import DocumentStore

PROGRESS_INTERVAL_SECONDS = 5.0


class Analyser(Protocol):
    """A backend that turns one document's text into an outcome. It never raises for a bad document."""

    max_concurrency: int

    async def analyse(self, text: str, context: ProcessingContext) -> AnalysisOutcome: ...


class NothingToSend:
    """Stands in for the LLM when registration found every document already cached, so no response
    format was probed. Should the cache change under the run, documents fail with a clear reason."""

    max_concurrency = 1

    async def analyse(self, text: str, context: ProcessingContext) -> AnalysisOutcome:
        return AnalysisOutcome(
            status=DocumentStatus.request_error,
            error="not sent: its cached result vanished during the run; run the batch again",
        )


async def analyze_documents(
    store: DocumentStore,
    run_id: str,
    partition: Partition,
    analyser: Analyser,
    log: Callable[[str], None] = lambda _: None,
) -> PartitionSummary:
    started = time.monotonic()
    context = partition.context
    todo = store.pending_document_ids(run_id, partition.document_ids)
    already_done = len(partition.document_ids) - len(todo)

    hits = {} if partition.force else store.find_cached(run_id, context.cache_key(), todo)
    store.record_cached(run_id, hits.values())
    todo = [d for d in todo if d not in hits]
    texts = store.document_texts(todo)

    statuses: Counter[str] = Counter({DocumentStatus.ok.value: len(hits)} if hits else {})
    semaphore = asyncio.Semaphore(max(1, analyser.max_concurrency))
    last_report = time.monotonic()

    async def run_one(document_id: str) -> None:
        nonlocal last_report
        async with semaphore:
            outcome = await analyser.analyse(texts[document_id], context)
        store.record_outcome(run_id, document_id, outcome)
        statuses[outcome.status] += 1
        if time.monotonic() - last_report >= PROGRESS_INTERVAL_SECONDS:
            last_report = time.monotonic()
            done = statuses.total() - len(hits)
            rate = done / (last_report - started)
            log(f"partition {partition.index}: {done}/{len(todo)} analysed, {rate:.1f} docs/s")

    await asyncio.gather(*(run_one(d) for d in todo))
    return PartitionSummary(
        index=partition.index,
        documents=len(partition.document_ids),
        status_counts=dict(statuses),
        cached=len(hits),
        skipped_already_done=already_done,
        seconds=round(time.monotonic() - started, 3),
    )
