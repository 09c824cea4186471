"""Analysing one partition of documents: cache look-up, concurrent analysis, each outcome stored as
soon as it is known, through an Analyser (the offline analysers here; the LLM's in ``batch_pipeline.llm``)."""

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from batch_pipeline.batch.partitions import Partition, PartitionSummary
from batch_pipeline.context import PinnedContext
from batch_pipeline.outcome import AnalysisOutcome, DocumentStatus
from batch_pipeline.store import DocumentStore

PROGRESS_INTERVAL_SECONDS = 5.0


class Analyser(Protocol):
    """A backend that turns one document's text into an outcome. It never raises for a bad document."""

    max_concurrency: int

    async def analyse(self, text: str, context: PinnedContext, earlier_answer: str | None = None) -> AnalysisOutcome:
        """earlier_answer: the answer a stopped run got for this document and did not repair."""
        ...


class NothingToSend:
    """Stands in for the LLM when registration found every document already cached, so no response
    format was probed. Should the cache change under the run, documents fail with a clear reason."""

    max_concurrency = 1

    async def analyse(self, text: str, context: PinnedContext, earlier_answer: str | None = None) -> AnalysisOutcome:
        return AnalysisOutcome(
            status=DocumentStatus.request_error,
            error="not sent: its cached result vanished during the run; run the batch again",
        )


NO_STORED_TEXT = (
    "not analysed: the store holds no text for it (an earlier failed read or conversion left its document "
    "row empty, or the row is gone); run the batch again to read it afresh"
)


def texts_to_analyse(store: DocumentStore, run_id: str, document_ids: Sequence[str]) -> dict[str, str]:
    """The stored text of each document that has one. A document without (whatever left its row
    so) fails alone, its status and reason stored, instead of failing the partition."""
    texts = {d: text for d, text in store.document_texts(document_ids).items() if text is not None}
    if missing := [d for d in document_ids if d not in texts]:
        outcome = AnalysisOutcome(status=DocumentStatus.analysis_error, error=NO_STORED_TEXT)
        store.record_outcomes(run_id, [(d, outcome) for d in missing])
    return texts


@dataclass
class PartitionStart:
    """A partition's documents once the cache and the store have had their say: what is left to
    analyse (with its text, and an earlier run's unrepaired answer where there is one), and the
    statuses of the rest."""

    partition: Partition
    started: float
    already_done: int  # finished in this run by an earlier delivery of the step
    cached: int
    todo: list[str]
    texts: dict[str, str]
    earlier_answers: dict[str, str]
    statuses: Counter[str]

    def summary(self) -> PartitionSummary:
        return PartitionSummary(
            index=self.partition.index,
            documents=len(self.partition.document_ids),
            status_counts=dict(self.statuses),
            cached=self.cached,
            skipped_already_done=self.already_done,
            seconds=round(time.monotonic() - self.started, 3),
        )


def start_partition(store: DocumentStore, run_id: str, partition: Partition) -> PartitionStart:
    """Skip what this run finished, serve what the result cache holds, fail alone what has no text."""
    started = time.monotonic()
    context_key = partition.context.cache_key()
    pending = store.pending_document_ids(run_id, partition.document_ids)
    hits = {} if partition.force else store.find_cached(run_id, context_key, pending)
    store.record_cached(run_id, hits.values())
    todo = [d for d in pending if d not in hits]
    texts = texts_to_analyse(store, run_id, todo)
    statuses: Counter[str] = Counter()
    if hits:
        statuses[DocumentStatus.ok.value] = len(hits)
    if without_text := len(todo) - len(texts):
        statuses[DocumentStatus.analysis_error.value] = without_text
    todo = [d for d in todo if d in texts]
    return PartitionStart(
        partition=partition,
        started=started,
        already_done=len(partition.document_ids) - len(pending),
        cached=len(hits),
        todo=todo,
        texts=texts,
        earlier_answers={} if partition.force else store.unrepaired_answers(run_id, context_key, todo),
        statuses=statuses,
    )


async def analyse_documents(
    store: DocumentStore,
    run_id: str,
    partition: Partition,
    analyser: Analyser,
    log: Callable[[str], None] = lambda _: None,
    stopping: asyncio.Event | None = None,
    grace_seconds: float = 0.0,
) -> PartitionSummary:
    """Once ``stopping`` is set, no document starts; those under way get grace_seconds to finish
    (the LLM analyser sends nothing new meanwhile), then are cancelled and left pending."""
    start = start_partition(store, run_id, partition)
    context, todo, texts, earlier, statuses = (
        partition.context,
        start.todo,
        start.texts,
        start.earlier_answers,
        start.statuses,
    )
    counted_before = statuses.total()
    semaphore = asyncio.Semaphore(max(1, analyser.max_concurrency))
    last_report = time.monotonic()

    writes = OutcomeWrites(store, run_id)

    async def run_one(document_id: str) -> None:
        nonlocal last_report
        async with semaphore:
            if stopping is not None and stopping.is_set():
                return
            if document_id in earlier:
                outcome = await analyser.analyse(texts[document_id], context, earlier[document_id])
            else:
                outcome = await analyser.analyse(texts[document_id], context)
        await writes.write(document_id, outcome)
        statuses[outcome.status] += 1
        if time.monotonic() - last_report >= PROGRESS_INTERVAL_SECONDS:
            last_report = time.monotonic()
            done = statuses.total() - counted_before
            rate = done / (last_report - start.started)
            log(f"partition {partition.index}: {done}/{len(todo)} analysed, {rate:.1f} docs/s")

    try:
        await _finish([asyncio.ensure_future(run_one(d)) for d in todo], stopping, grace_seconds)
    finally:
        writes.flush()  # a stopped run keeps every outcome already known before its rows are marked
    return start.summary()


async def _finish(tasks: list[asyncio.Task], stopping: asyncio.Event | None, grace_seconds: float) -> None:
    """Every task to its end, or, once stopping is set, for grace_seconds more; then the rest are cancelled."""
    everything = asyncio.gather(*tasks)
    stopped = asyncio.ensure_future(stopping.wait()) if stopping else asyncio.get_running_loop().create_future()
    try:
        await asyncio.wait([everything, stopped], return_when=asyncio.FIRST_COMPLETED)
        if not everything.done():
            await asyncio.wait([everything], timeout=grace_seconds)
        if everything.done():
            everything.result()
    finally:
        stopped.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if everything.done() and not everything.cancelled():
            everything.exception()  # retrieved: a failure after the stop is not worth a warning


class OutcomeWrites:
    """Outcomes that become known in the same turn of the event loop, stored in one transaction at
    the end of that turn: an offline worker's chunk of 32 documents is one commit instead of 32, and
    no outcome waits for a later one. Each writer awaits its transaction, so a failed write fails
    the partition."""

    def __init__(self, store: DocumentStore, run_id: str):
        self.store = store
        self.run_id = run_id
        self._waiting: list[tuple[str, AnalysisOutcome]] = []
        self._written: asyncio.Future | None = None

    async def write(self, document_id: str, outcome: AnalysisOutcome) -> None:
        if self._written is None:
            loop = asyncio.get_running_loop()
            self._written = loop.create_future()
            loop.call_soon(self.flush)  # after the other documents woken in this turn have joined
        written = self._written
        self._waiting.append((document_id, outcome))
        await asyncio.shield(written)  # a cancelled writer must not cancel the others' transaction

    def flush(self) -> None:
        waiting, written = self._waiting, self._written
        self._waiting, self._written = [], None
        if not waiting or written is None:
            return
        try:
            self.store.record_outcomes(self.run_id, waiting)
        except Exception as e:
            written.set_exception(e)
        else:
            written.set_result(None)
