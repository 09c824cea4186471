"""Analysing one partition through the provider's Batch API: cached documents are never sent,
documents already in an unfinished batch (of a run that died) are not sent again but that batch is
polled, every batch is recorded before it is created, and every line of its output and error files
ends its document (expired or cancelled ones are sent again, up to batch_resubmissions times)."""

import asyncio
import time
from collections import Counter
from collections.abc import Callable

from openai.types import Batch

from batch_pipeline.batch.partitions import Partition, PartitionSummary
from batch_pipeline.costs.spend import BudgetExceeded
from batch_pipeline.llm.analyser import LlmAnalyser
from batch_pipeline.llm.batch_api import TERMINAL, BatchApi
from batch_pipeline.llm.batch_lines import LineResult, parse_results, request_line, split_lines
from batch_pipeline.llm.tokens import estimate_prompt_tokens
from batch_pipeline.outcome import AnalysisOutcome, DocumentStatus
from batch_pipeline.store import DocumentStore
from batch_pipeline.store.provider_batches import (
    COLLECTED,
    SUBMITTED,
    ProviderBatch,
    batch_key,
    open_batches_holding,
    record_preparing,
    update_batch,
)

FIRST_POLL_SECONDS = 1.0
POLL_GROWTH = 1.5


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
        self.reserved: dict[str, float] = {}  # USD held for each document sent, under max_cost_usd

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

    async def _submit(self, document_ids: list[str], round_: int) -> list[ProviderBatch]:
        bodies = {d: self.analyser.request_body(self.texts[d], self.context) for d in document_ids}
        if self.analyser.spend:
            bodies = self._within_budget(bodies)
        lines = [(d, request_line(d, body)) for d, body in bodies.items()]
        submitted = []
        for chunk_index, chunk in enumerate(split_lines(lines)):
            key = batch_key(self.run_id, self.partition.index, round_, chunk_index)
            ids = [custom_id for custom_id, _ in chunk]
            row = record_preparing(self.store, key, self.endpoint, self.context_key, self.run_id, round_, ids)
            submitted.append(await self._create(row, [line for _, line in chunk]))
        return submitted

    def _within_budget(self, bodies: dict[str, dict]) -> dict[str, dict]:
        """The documents whose worst case fits in max_cost_usd, each reserved at the Batch API's price;
        the rest end budget_exceeded, unsent."""
        fitting = {}
        for document_id, body in bodies.items():
            try:
                tokens = estimate_prompt_tokens(body["messages"])
                self.reserved[document_id] = self.analyser.spend.reserve(tokens, "batch")
                fitting[document_id] = body
            except BudgetExceeded as e:
                self._record(document_id, AnalysisOutcome(status=DocumentStatus.budget_exceeded, error=str(e)))
        return fitting

    def _settle(self, document_id: str, result: LineResult | None) -> None:
        """What a line really cost replaces its reservation (lines never executed cost nothing)."""
        spend = self.analyser.spend
        if spend is None:
            return
        reserved = self.reserved.pop(document_id, 0.0)
        usage = (result.body or {}).get("usage") if result and result.status_code == 200 else None
        if usage is None:
            spend.release(reserved)
            return
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        spend.settle(reserved, usage.get("prompt_tokens") or 0, cached, usage.get("completion_tokens") or 0, "batch")

    async def _create(self, row: ProviderBatch, lines: list[bytes]) -> ProviderBatch:
        file_id = await self.api.upload(f"{row.batch_key}.jsonl", lines)
        update_batch(self.store, row.batch_key, input_file_id=file_id)
        batch = await self.api.create(row.batch_key, self.run_id, file_id, row.created_at, self.log)
        return self._recorded(row, batch, f"sent {len(row.document_ids)} documents (round {row.round})")

    def _recorded(self, row: ProviderBatch, batch: Batch, what: str) -> ProviderBatch:
        update_batch(self.store, row.batch_key, batch_id=batch.id, state=SUBMITTED, provider_status=batch.status)
        self.log(f"partition {self.partition.index}: batch {batch.id}: {what}")
        return row.model_copy(update={"batch_id": batch.id, "state": SUBMITTED, "provider_status": batch.status})

    async def _settle_unsubmitted(self, row: ProviderBatch) -> ProviderBatch:
        """A batch recorded by a run that died before hearing its id: the provider may have created it."""
        if found := await self.api.find(row.batch_key, row.created_at):
            return self._recorded(row, found, "found at the provider by its key, created by an earlier attempt")
        texts = self.store.document_texts(row.document_ids)
        lines = [request_line(d, self.analyser.request_body(texts[d], self.context)) for d in row.document_ids]
        return await self._create(row, lines)

    async def _follow(self, row: ProviderBatch) -> None:
        """Poll the batch until it ends, store what it answered, and send what it left unanswered again."""
        if row.batch_id is None:
            row = await self._settle_unsubmitted(row)
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
            batch = await self.api.retrieve(row.batch_id)
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
        """Store the batch's answers for this run's documents; return those it left unanswered."""
        mine = [d for d in row.document_ids if d in self.todo]
        if batch.status == "failed":
            errors = (batch.errors.data if batch.errors and batch.errors.data else None) or []
            detail = "; ".join(f"{e.code} (line {e.line}): {e.message}" for e in errors[:5]) or "no reason given"
            reason = f"the Batch API refused batch {batch.id}: {detail}"[:1000]
            for document_id in mine:
                self._settle(document_id, None)
                self._record(document_id, AnalysisOutcome(status=DocumentStatus.request_error, error=reason))
            update_batch(self.store, row.batch_key, state=COLLECTED)
            return []
        output = await self.api.download(batch.output_file_id)
        errors = await self.api.download(batch.error_file_id)
        results = parse_results(output, errors)
        unanswered = [d for d in mine if d in results and results[d].unfinished]
        answered = [d for d in mine if d not in unanswered]
        slots = asyncio.Semaphore(max(1, self.analyser.max_concurrency))

        for document_id in mine:
            self._settle(document_id, results.get(document_id))

        async def conclude(document_id: str) -> None:
            async with slots:
                outcome = await self._outcome(document_id, results.get(document_id), batch.id)
            self._record(document_id, outcome)

        await asyncio.gather(*(conclude(d) for d in answered))
        update_batch(self.store, row.batch_key, state=COLLECTED)
        return unanswered

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

    def _record(self, document_id: str, outcome: AnalysisOutcome) -> None:
        self.store.record_outcome(self.run_id, document_id, outcome)
        self.statuses[outcome.status] += 1
