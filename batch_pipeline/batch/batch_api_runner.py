"""Analysing one partition through the provider's Batch API: cached documents are never sent,
documents already in an open batch (whoever sent it: another run, another delivery of this step,
a run that died) are not sent again but that batch is polled, every batch is recorded (its
documents claimed) before it is created, and only its record's owner creates it, while it holds
its lease; every line of its output and error files ends its document (expired or cancelled ones
are sent again, up to batch_resubmissions times)."""

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable

import openai
from openai.types import Batch

from batch_pipeline.batch.batch_spend import batch_budget, lines_cost, price_of
from batch_pipeline.batch.partitions import Partition, PartitionSummary
from batch_pipeline.batch.runner import start_partition
from batch_pipeline.llm.analyser import LlmAnalyser
from batch_pipeline.llm.batch_api import TERMINAL, BatchApi, CreateRefused
from batch_pipeline.llm.batch_lines import LineResult, parse_results, request_line, split_lines
from batch_pipeline.llm.completions import retryable
from batch_pipeline.outcome import AnalysisOutcome, DocumentStatus, LlmApi
from batch_pipeline.store import DocumentStore
from batch_pipeline.store.provider_batches import (
    ABANDONED,
    COLLECTED,
    LEASE_SECONDS,
    SUBMITTED,
    ProviderBatch,
    abandon_expired,
    give_up,
    load_batch,
    mark_collected,
    open_batches_holding,
    record_preparing,
    record_progress,
    record_submitted,
    release_collection,
    renew_lease,
    take_collection,
    take_create_turn,
    uncreated_and_expired,
)

FIRST_POLL_SECONDS = 1.0
POLL_GROWTH = 1.5
# A batch recorded by another process without its id yet: looked for at the provider, then in the
# store, this often, until it has its id or its owner's lease has run out.
PREPARING_RECHECK_SECONDS = 2.0
LEASE_RENEWALS = 5  # a live owner renews its lease this many times per lease
UNFINISHED_STATUSES = ("expired", "cancelled")


class LeaseLost(Exception):
    """Another process took over the lease this one was working under."""


class BatchApiRun:
    """One partition's documents through the Batch API, in one run (one delivery of its step)."""

    def __init__(
        self,
        store: DocumentStore,
        run_id: str,
        partition: Partition,
        analyser: LlmAnalyser,
        api: BatchApi,
        endpoint: str,
        log: Callable[[str], None],
        lease_seconds: float | None = None,
    ):
        self.store, self.run_id, self.partition = store, run_id, partition
        self.analyser, self.api, self.endpoint, self.log = analyser, api, endpoint, log
        self.context = partition.context
        self.context_key = partition.context.cache_key()
        self.statuses: Counter[str] = Counter()
        self.texts: dict[str, str] = {}
        self.todo: set[str] = set()
        # A retried or redelivered step is another owner: it polls what this one creates, never creates it.
        self.owner = f"{run_id[:60]}/{uuid.uuid4().hex[:16]}"
        # A dead owner's last create request (timeout_seconds at most) ended well before its lease.
        self.lease_seconds = lease_seconds or max(LEASE_SECONDS, 3 * analyser.settings.timeout_seconds)
        self.lines: dict[str, bytes] = {}  # the input lines of the documents this run recorded, until uploaded
        self.refused: set[str] = set()  # over the budget: never sent
        self.counted: set[str] = set()  # documents of this run whose outcome is in self.statuses
        self.following: set[str] = set()  # batch keys

    async def analyse(self) -> PartitionSummary:
        start = start_partition(self.store, self.run_id, self.partition)
        self.statuses, self.texts, self.todo = start.statuses, start.texts, set(start.todo)
        await self._repair(start.earlier_answers)
        self.todo -= start.earlier_answers.keys()
        placed = self._place([d for d in start.todo if d in self.todo], round_=0)
        await self._follow_all(placed + self._left_by_dead_runs())
        return start.summary()

    def _left_by_dead_runs(self) -> list[ProviderBatch]:
        """Records of this run's budget that a dead owner left without a batch id: settled here
        (found at the provider and collected, or abandoned and their reservation released)."""
        spend = self.analyser.spend
        return [] if spend is None else uncreated_and_expired(self.store, spend.run_id)

    async def _repair(self, earlier_answers: dict[str, str]) -> None:
        """Documents whose answer a stopped run got but did not repair: repaired online from that
        answer, not sent again."""
        slots = asyncio.Semaphore(max(1, self.analyser.max_concurrency))

        async def repair(document_id: str) -> None:
            async with slots:
                text = self.texts[document_id]
                outcome = await self.analyser.analyse(text, self.context, earlier_answers[document_id])
            self._record(document_id, outcome)

        await asyncio.gather(*(repair(d) for d in earlier_answers))

    def _body(self, document_id: str) -> dict:
        return self.analyser.request_body(self.texts[document_id], self.context)

    def _place(self, document_ids: list[str], round_: int) -> list[ProviderBatch]:
        """The batches that answer these documents: open ones that hold some already (polled, not
        sent again), and ones recorded here for the rest. A document that another run or worker
        claims first is found in its batch on the next pass."""
        placed: list[ProviderBatch] = []
        left = document_ids
        while left:
            adopted = self._adopt(left)
            held = {d for batch in adopted for d in batch.document_ids}
            recorded = self._record_batches([d for d in left if d not in held], round_)
            placed += adopted + recorded
            done = held | {d for batch in recorded for d in batch.document_ids} | self.refused
            left = self._still_to_send([d for d in left if d not in done])
        return placed

    def _adopt(self, document_ids: list[str]) -> list[ProviderBatch]:
        adopted = open_batches_holding(self.store, self.endpoint, self.context_key, document_ids)
        wanted = set(document_ids)
        for batch in adopted:
            theirs = [d for d in batch.document_ids if d in wanted]
            self.log(
                f"partition {self.partition.index}: {len(theirs)} documents are already in batch "
                f"{batch.batch_id or '(being created)'} of run {batch.run_id}: polling it instead of sending them again"
            )
        return adopted

    def _record_batches(self, document_ids: list[str], round_: int) -> list[ProviderBatch]:
        """Record batches (this run the owner) for those of the documents that no other open batch
        has claimed meanwhile and whose worst case fits the budget (reserved with the record)."""
        bodies = {d: self._body(d) for d in document_ids}
        lines = [(d, request_line(d, body)) for d, body in bodies.items()]
        recorded = []
        for chunk in split_lines(lines):
            ids = [custom_id for custom_id, _ in chunk]
            budget = batch_budget(self.analyser.spend, {d: bodies[d] for d in ids})
            done = record_preparing(
                self.store, self.endpoint, self.context_key, self.run_id, round_, ids, self.owner, self.lease_seconds,
                budget,
            )  # fmt: skip
            for document_id in done.over_budget:
                self.refused.add(document_id)
                reason = self.analyser.spend.exceeded(budget.worst_case_usd[document_id])
                self._record(document_id, AnalysisOutcome(status=DocumentStatus.budget_exceeded, error=reason))
            if done.batch is not None:
                claimed = set(done.batch.document_ids)
                self.lines.update((d, line) for d, line in chunk if d in claimed)
                recorded.append(done.batch)
        return recorded

    def _still_to_send(self, document_ids: list[str]) -> list[str]:
        """Those of the documents still pending in this run and not in the result cache (a batch
        that another run or delivery collected meanwhile may have answered them)."""
        if not document_ids:
            return []
        pending = self.store.pending_document_ids(self.run_id, document_ids)
        hits = {} if self.partition.force else self.store.find_cached(self.run_id, self.context_key, pending)
        self.store.record_cached(self.run_id, hits.values())
        if hits:
            self.statuses[DocumentStatus.ok.value] += len(hits)
            self.counted.update(hits)
        return [d for d in pending if d not in hits]

    async def _follow_all(self, batches: list[ProviderBatch]) -> None:
        new = [batch for batch in batches if batch.batch_key not in self.following]
        self.following.update(batch.batch_key for batch in new)
        await asyncio.gather(*(self._follow(batch) for batch in new))

    async def _follow(self, row: ProviderBatch) -> None:
        """Have the batch created (or found), poll it until it ends, store what it answered, and
        send what it left unanswered again."""
        if row.batch_id is None:
            submitted = await self._submitted(row)
            if submitted is None:
                mine = self._still_to_send([d for d in row.document_ids if d in self.todo])
                self.log(
                    f"partition {self.partition.index}: no batch was created for record {row.batch_key} "
                    f"(abandoned): sending its {len(mine)} documents of this run"
                )
                await self._follow_all(self._place(mine, row.round))
                return
            row = submitted
        batch = await self._wait_until_done(row)
        unanswered = await self._collect_once(row, batch)
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
        await self._follow_all(self._place(self._still_to_send(unanswered), row.round + 1))

    async def _submitted(self, row: ProviderBatch) -> ProviderBatch | None:
        """The record with its batch id; None when it was abandoned with no batch created."""
        if row.owner == self.owner:
            try:
                return await self._create(row)
            except CreateRefused:
                self.log(
                    f"partition {self.partition.index}: lost the lease on batch record {row.batch_key}: not creating it"
                )
        return await self._settle_unsubmitted(row)

    async def _create(self, row: ProviderBatch) -> ProviderBatch | None:
        key, lines = row.batch_key, [self.lines.pop(d) for d in row.document_ids]
        async with self._lease_kept(key):
            try:
                file_id = await self.api.upload(f"{key}.jsonl", lines)
            except Exception:
                give_up(self.store, key, self.owner)
                raise

            def may_create() -> bool:
                return take_create_turn(self.store, key, self.owner, file_id, self.lease_seconds)

            batch = await self.api.create(key, self.run_id, file_id, row.created_at, self.log, may_create=may_create)
        return await self._recorded(row, batch, f"sent {len(row.document_ids)} documents (round {row.round})")

    @contextlib.asynccontextmanager
    async def _lease_kept(self, key: str, stop_when_lost: bool = False) -> AsyncIterator[None]:
        """Renew this owner's lease while it uploads and creates (or collects), so that a slow
        upload, create retries or many repairs never make it look dead; the lease of a stalled or
        dead process runs out. stop_when_lost: once another process holds the lease, the block is
        cancelled and LeaseLost raised (a collector that lost its lease stops repairing)."""
        inside, lost = asyncio.current_task(), asyncio.Event()

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.lease_seconds / LEASE_RENEWALS)
                try:
                    held = renew_lease(self.store, key, self.owner, self.lease_seconds)
                except Exception as e:  # the store may answer the next renewal; the lease decides
                    self.log(f"partition {self.partition.index}: could not renew the lease on {key}: {e}")
                    continue
                if not held:
                    self.log(f"partition {self.partition.index}: lost the lease on batch record {key}")
                    if stop_when_lost and inside is not None:
                        lost.set()
                        inside.cancel()
                    return

        renewing = asyncio.create_task(renew())
        try:
            yield
        except asyncio.CancelledError:
            if lost.is_set() and inside is not None and inside.uncancel() == 0:
                raise LeaseLost(key) from None
            raise
        finally:
            renewing.cancel()

    async def _recorded(self, row: ProviderBatch, batch: Batch, what: str) -> ProviderBatch | None:
        """The record with this batch's id. A batch whose record was meanwhile abandoned (or given
        another batch) is cancelled at once: its documents are sent, or sent already, in another."""
        if record_submitted(self.store, row.batch_key, batch.id, batch.status):
            self.log(f"partition {self.partition.index}: batch {batch.id}: {what}")
            return row.model_copy(update={"batch_id": batch.id, "state": SUBMITTED, "provider_status": batch.status})
        now = load_batch(self.store, row.batch_key)
        if now.batch_id == batch.id:
            return now
        self.log(
            f"partition {self.partition.index}: batch {batch.id} was created after its record {row.batch_key} was "
            f"{now.state}: cancelling it"
        )
        try:
            await self.api.cancel(batch.id)
        except openai.APIStatusError as e:
            self.log(f"partition {self.partition.index}: batch {batch.id} could not be cancelled: {e}")
        return now if now.batch_id is not None else None

    async def _settle_unsubmitted(self, row: ProviderBatch) -> ProviderBatch | None:
        """A record without its batch id that another owner holds (or held): being created by a
        live process, or by one that died (the provider may have created it anyway). None: it was
        abandoned, with no batch created."""
        while True:
            now = load_batch(self.store, row.batch_key)
            if now.batch_id is not None:
                return now
            if now.state == ABANDONED:
                return None
            if found := await self.api.find(now.batch_key, now.input_file_id, now.created_at):
                return await self._recorded(
                    now, found, "found at the provider, created by an attempt that did not record it"
                )
            if abandon_expired(self.store, now.batch_key, self.lease_seconds):
                return None
            await asyncio.sleep(PREPARING_RECHECK_SECONDS)

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
                record_progress(self.store, row.batch_key, batch.status, counts.model_dump() if counts else None)
            if batch.status in TERMINAL:
                return batch
            await asyncio.sleep(wait)
            wait = min(wait * POLL_GROWTH, self.analyser.settings.batch_poll_max_seconds)

    async def _collect_once(self, row: ProviderBatch, batch: Batch) -> list[str]:
        """This run's documents the batch left unanswered, once one process has collected it: this
        one, or another (a redelivery of this step, another run adopting it) that took the
        collection first. Then what that one stored is taken from its rows or the result cache,
        and this run's documents it did not conclude are concluded here."""
        while True:
            if take_collection(self.store, row.batch_key, self.owner, self.lease_seconds):
                try:
                    async with self._lease_kept(row.batch_key, stop_when_lost=True):
                        return await self._collect(row, batch, collector=True)
                except LeaseLost:
                    self.log(f"partition {self.partition.index}: lost the collection of {batch.id}: waiting for it")
                    continue
                except BaseException:
                    # Stopped or failed mid-collection: the next run or delivery collects at once.
                    release_collection(self.store, row.batch_key, self.owner)
                    raise
            if load_batch(self.store, row.batch_key).state == COLLECTED:
                return await self._collect(row, batch, collector=False)
            await asyncio.sleep(PREPARING_RECHECK_SECONDS)

    async def _collect(self, row: ProviderBatch, batch: Batch, collector: bool) -> list[str]:
        """Store the batch's answers (for this run's documents, and, collecting, for a dead run's
        that are in it: they were paid for); return this run's documents it left unanswered."""
        candidates = [d for d in row.document_ids if d in self.todo]
        pending = self.store.pending_document_ids(self.run_id, candidates)
        # Concluded by another delivery of this step that collected (some of) the batch first.
        elsewhere = sorted(set(candidates) - set(pending) - self.counted)
        self.statuses.update(self.store.statuses(self.run_id, elsewhere))
        self.counted.update(elsewhere)
        mine = self._still_to_send(pending)
        if batch.status == "failed":
            errors = (batch.errors.data if batch.errors and batch.errors.data else None) or []
            detail = "; ".join(f"{e.code} (line {e.line}): {e.message}" for e in errors[:5]) or "no reason given"
            reason = f"the Batch API refused batch {batch.id}: {detail}"[:1000]
            for document_id in mine:
                self._record(document_id, AnalysisOutcome(status=DocumentStatus.request_error, error=reason))
            if collector:
                mark_collected(self.store, row.batch_key, self.owner, 0.0)
            return []
        results = parse_results(
            await self.api.download(batch.output_file_id), await self.api.download(batch.error_file_id)
        )
        ended_early = batch.status in UNFINISHED_STATUSES
        unanswered = [d for d in mine if (d not in results and ended_early) or (d in results and results[d].unfinished)]
        answered = [(self.run_id, d) for d in mine if d not in unanswered]
        if collector:
            answered += self._answered_for_their_run(row, results, mine)
        slots = asyncio.Semaphore(max(1, self.analyser.max_concurrency))

        async def conclude(run_id: str, document_id: str) -> None:
            async with slots:
                outcome = await self._outcome(document_id, results.get(document_id), batch.id)
            self._record(document_id, outcome, run_id)

        await asyncio.gather(*(conclude(run_id, d) for run_id, d in answered))
        if collector:
            cost = lines_cost(price_of(self.analyser.spend, self.context.ai_model), results)
            if not mark_collected(self.store, row.batch_key, self.owner, cost):
                self.log(
                    f"partition {self.partition.index}: batch {batch.id} was collected by another process meanwhile"
                )
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
            return AnalysisOutcome(status=DocumentStatus.provider_error, error=reason, llm_api=LlmApi.batch)
        if result.status_code != 200 or result.body is None:
            failed = result.status_code is not None and result.status_code < 500
            status = DocumentStatus.request_error if failed else DocumentStatus.provider_error
            return AnalysisOutcome(status=status, error=result.problem(), llm_api=LlmApi.batch)
        text = self.texts[document_id]
        return await self.analyser.analyse_batch_answer(text, self.context, result.body, result.request_id)

    def _record(self, document_id: str, outcome: AnalysisOutcome, run_id: str | None = None) -> None:
        self.store.record_outcome(run_id or self.run_id, document_id, outcome)
        if run_id in (None, self.run_id):
            self.statuses[outcome.status] += 1
            self.counted.add(document_id)
