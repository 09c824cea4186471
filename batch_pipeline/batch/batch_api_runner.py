"""Analysing one partition through the provider's Batch API: cached documents are never sent,
documents already in an unfinished batch (of a run that died) are not sent again but that batch is
polled, every batch is recorded before it is created, and every line of its output and error files
ends its document (expired or cancelled ones are sent again, up to batch_resubmissions times)."""

import asyncio
import time
from collections import Counter
from collections.abc import Callable

from openai.types import Batch

from batch_pipeline.batch.batch_spend import BatchSpend
from batch_pipeline.batch.partitions import Partition, PartitionSummary
from batch_pipeline.costs.spend import BudgetExceeded
from batch_pipeline.llm.analyser import LlmAnalyser
from batch_pipeline.llm.batch_api import TERMINAL, BatchApi
from batch_pipeline.llm.batch_lines import LineResult, parse_results, request_line, split_lines
from batch_pipeline.llm.completions import retryable
from batch_pipeline.outcome import AnalysisOutcome, DocumentStatus
from batch_pipeline.store import DocumentStore
from batch_pipeline.store.provider_batches import (
    COLLECTED,
    SUBMITTED,
    ProviderBatch,
    abandon_if_stale,
    batch_key,
    load_batch,
    open_batches_holding,
    record_preparing,
    update_batch,
)

FIRST_POLL_SECONDS = 1.0
POLL_GROWTH = 1.5
# A batch recorded without its id yet: its run is creating it (seconds), or died. Only after this
# long untouched is it taken for dead and its documents sent by another run.
PREPARING_STALE_SECONDS = 600.0
PREPARING_RECHECK_SECONDS = 2.0
UNFINISHED_STATUSES = ("expired", "cancelled")


class BatchApiRun:
    """One partition's documents through the Batch API, in one run."""

    def __init__(
        self,
        store: DocumentStore,
        run_id: str,
        partition: Partition,
        analyser: LlmAnalyser,
        api: BatchApi,
        endpoint: str,
        log: Callable[[str], None],
    ):
        self.store, self.run_id, self.partition = store, run_id, partition
        self.analyser, self.api, self.endpoint, self.log = analyser, api, endpoint, log
        self.context = partition.context
        self.context_key = partition.context.cache_key()
        self.statuses: Counter[str] = Counter()
        self.texts: dict[str, str] = {}
        self.todo: set[str] = set()
        self.spend = BatchSpend(analyser.spend)

    async def analyse(self) -> PartitionSummary:
        started = time.monotonic()
        todo = self.store.pending_document_ids(self.run_id, self.partition.document_ids)
        already_done = len(self.partition.document_ids) - len(todo)
        hits = {} if self.partition.force else self.store.find_cached(self.run_id, self.context_key, todo)
        self.store.record_cached(self.run_id, hits.values())
        self.statuses.update({DocumentStatus.ok.value: len(hits)} if hits else {})
        self.todo = {d for d in todo if d not in hits}
        self.texts = self.store.document_texts(sorted(self.todo))

        adopted = open_batches_holding(self.store, self.endpoint, self.context_key, sorted(self.todo))
        in_flight = {d for batch in adopted for d in batch.document_ids}
        for batch in adopted:
            self.log(
                f"partition {self.partition.index}: {len(self.todo & set(batch.document_ids))} documents are "
                f"already in batch {batch.batch_id or '(being created)'} of run {batch.run_id}: polling it "
                "instead of sending them again"
            )
            for document_id in self.todo & set(batch.document_ids):  # already sent: counted, fitting or not
                self.spend.reserve_sent(document_id, self._body(document_id))
        to_send = [d for d in self.partition.document_ids if d in self.todo and d not in in_flight]
        batches = adopted + (await self._submit(to_send, round_=0) if to_send else [])
        await asyncio.gather(*(self._follow(batch) for batch in batches))
        return PartitionSummary(
            index=self.partition.index,
            documents=len(self.partition.document_ids),
            status_counts=dict(self.statuses),
            cached=len(hits),
            skipped_already_done=already_done,
            seconds=round(time.monotonic() - started, 3),
        )

    def _body(self, document_id: str) -> dict:
        return self.analyser.request_body(self.texts[document_id], self.context)

    async def _submit(self, document_ids: list[str], round_: int) -> list[ProviderBatch]:
        lines = []
        for document_id in document_ids:
            body = self._body(document_id)
            try:
                self.spend.reserve(document_id, body)
            except BudgetExceeded as e:
                self._record(document_id, AnalysisOutcome(status=DocumentStatus.budget_exceeded, error=str(e)))
                continue
            lines.append((document_id, request_line(document_id, body)))
        submitted = []
        for chunk in split_lines(lines):
            ids = [custom_id for custom_id, _ in chunk]
            key = batch_key(self.run_id, round_, ids)
            row = record_preparing(self.store, key, self.endpoint, self.context_key, self.run_id, round_, ids)
            submitted.append(await self._create(row, [line for _, line in chunk]))
        return submitted

    async def _create(self, row: ProviderBatch, lines: list[bytes]) -> ProviderBatch:
        file_id = await self.api.upload(f"{row.batch_key}.jsonl", lines)
        update_batch(self.store, row.batch_key, input_file_id=file_id)
        batch = await self.api.create(row.batch_key, self.run_id, file_id, row.created_at, self.log)
        return self._recorded(row, batch, f"sent {len(row.document_ids)} documents (round {row.round})")

    def _recorded(self, row: ProviderBatch, batch: Batch, what: str) -> ProviderBatch:
        update_batch(self.store, row.batch_key, batch_id=batch.id, state=SUBMITTED, provider_status=batch.status)
        self.log(f"partition {self.partition.index}: batch {batch.id}: {what}")
        return row.model_copy(update={"batch_id": batch.id, "state": SUBMITTED, "provider_status": batch.status})

    async def _settle_unsubmitted(self, row: ProviderBatch) -> ProviderBatch | None:
        """A batch recorded without its id: being created by a live run, or by one that died (the
        provider may have created it anyway). None: it was never created, and its run is gone."""
        while True:
            if found := await self.api.find(row.batch_key, row.created_at):
                return self._recorded(row, found, "found at the provider by its key, created by an earlier attempt")
            if (now := load_batch(self.store, row.batch_key)).batch_id is not None:
                return now  # its run recorded the id meanwhile
            if abandon_if_stale(self.store, row.batch_key, PREPARING_STALE_SECONDS):
                return None
            await asyncio.sleep(PREPARING_RECHECK_SECONDS)

    async def _follow(self, row: ProviderBatch) -> None:
        """Poll the batch until it ends, store what it answered, and send what it left unanswered again."""
        if row.batch_id is None and (settled := await self._settle_unsubmitted(row)) is None:
            mine = [d for d in row.document_ids if d in self.todo]
            self.log(f"partition {self.partition.index}: a run that died never created its batch: sending {len(mine)}")
            await asyncio.gather(*(self._follow(new_row) for new_row in await self._submit(mine, row.round)))
            return
        row = settled if row.batch_id is None else row
        batch = await self._wait_until_done(row)
        unanswered = await self._collect(row, batch)
        if not unanswered:
            return
        if row.round >= self.analyser.settings.batch_resubmissions:
            reason = (
                f"the Batch API left it unanswered ({batch.status}) in {row.round + 1} batches, the last {batch.id}; "
                "run the batch again to send it again"
            )
            for document_id in unanswered:
                self._record(document_id, AnalysisOutcome(status=DocumentStatus.batch_expired, error=reason))
            return
        self.log(f"partition {self.partition.index}: batch {batch.id} {batch.status}: sending {len(unanswered)} again")
        again = await self._submit(unanswered, row.round + 1)
        await asyncio.gather(*(self._follow(next_row) for next_row in again))

    async def _wait_until_done(self, row: ProviderBatch) -> Batch:
        assert row.batch_id is not None
        wait, seen = FIRST_POLL_SECONDS, None
        while True:
            try:
                batch = await self.api.retrieve(row.batch_id)
            except Exception as e:
                if not retryable(e):
                    raise
                # The batch goes on at the provider whatever happens here: keep looking.
                self.log(f"partition {self.partition.index}: batch {row.batch_id}: no status ({e}); trying again")
                await asyncio.sleep(self.analyser.settings.batch_poll_max_seconds)
                continue
            counts = batch.request_counts
            now = (batch.status, counts.completed if counts else None, counts.failed if counts else None)
            if now != seen:
                seen = now
                done = f"{counts.completed}/{counts.total} done, {counts.failed} failed" if counts else "no counts yet"
                self.log(f"partition {self.partition.index}: batch {batch.id}: {batch.status}, {done}")
                update_batch(
                    self.store, row.batch_key, provider_status=batch.status,
                    request_counts=counts.model_dump() if counts else None,
                )  # fmt: skip
            if batch.status in TERMINAL:
                return batch
            await asyncio.sleep(wait)
            wait = min(wait * POLL_GROWTH, self.analyser.settings.batch_poll_max_seconds)

    async def _collect(self, row: ProviderBatch, batch: Batch) -> list[str]:
        """Store the batch's answers (for this run's documents, and for a dead run's that are in it:
        they were paid for); return this run's documents it left unanswered."""
        mine = [d for d in row.document_ids if d in self.todo]
        if batch.status == "failed":
            errors = (batch.errors.data if batch.errors and batch.errors.data else None) or []
            detail = "; ".join(f"{e.code} (line {e.line}): {e.message}" for e in errors[:5]) or "no reason given"
            reason = f"the Batch API refused batch {batch.id}: {detail}"[:1000]
            for document_id in mine:
                self.spend.settle(document_id, None)
                self._record(document_id, AnalysisOutcome(status=DocumentStatus.request_error, error=reason))
            update_batch(self.store, row.batch_key, state=COLLECTED)
            return []
        results = parse_results(
            await self.api.download(batch.output_file_id), await self.api.download(batch.error_file_id)
        )
        ended_early = batch.status in UNFINISHED_STATUSES
        unanswered = [d for d in mine if (d not in results and ended_early) or (d in results and results[d].unfinished)]
        for document_id in mine:
            self.spend.settle(document_id, results.get(document_id))
        answered = [(self.run_id, d) for d in mine if d not in unanswered]
        answered += self._answered_for_their_run(row, results, mine)
        slots = asyncio.Semaphore(max(1, self.analyser.max_concurrency))

        async def conclude(run_id: str, document_id: str) -> None:
            async with slots:
                outcome = await self._outcome(document_id, results.get(document_id), batch.id)
            self._record(document_id, outcome, run_id)

        await asyncio.gather(*(conclude(run_id, d) for run_id, d in answered))
        update_batch(self.store, row.batch_key, state=COLLECTED)
        return unanswered

    def _answered_for_their_run(
        self, row: ProviderBatch, results: dict[str, LineResult], mine: list[str]
    ) -> list[tuple[str, str]]:
        """Answers in an adopted batch for documents this run does not hold: stored in the rows of
        the run that sent them (if still unfinished there), so that the result cache has them."""
        if row.run_id == self.run_id:
            return []
        others = [d for d in row.document_ids if d not in mine and d in results and not results[d].unfinished]
        unfinished = self.store.unfinished_document_ids(row.run_id, others)
        self.texts.update(self.store.document_texts(unfinished))
        return [(row.run_id, d) for d in unfinished]

    async def _outcome(self, document_id: str, result: LineResult | None, batch_id: str) -> AnalysisOutcome:
        if result is None:
            reason = f"missing from both the output and the error file of batch {batch_id}"
            return AnalysisOutcome(status=DocumentStatus.provider_error, error=reason, llm_api="batch")
        if result.status_code != 200 or result.body is None:
            failed = result.status_code is not None and result.status_code < 500
            status = DocumentStatus.request_error if failed else DocumentStatus.provider_error
            return AnalysisOutcome(status=status, error=result.problem(), llm_api="batch")
        text = self.texts[document_id]
        return await self.analyser.analyse_batch_answer(text, self.context, result.body, result.request_id)

    def _record(self, document_id: str, outcome: AnalysisOutcome, run_id: str | None = None) -> None:
        self.store.record_outcome(run_id or self.run_id, document_id, outcome)
        if run_id in (None, self.run_id):
            self.statuses[outcome.status] += 1
