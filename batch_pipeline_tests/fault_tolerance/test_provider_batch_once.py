"""A provider batch is created at most once, in every interleaving (issue 25, item 2).

The tests drive the real runner (BatchApiRun, with the real openai client) against the loopback
Batch API. They hold requests at the fake's gates, make a step die at a chosen point, or let two
workers look for open batches at the same moment. Then they count the batches the provider
created: exactly one per set of documents."""

import asyncio
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.batch import batch_api_runner
from batch_pipeline.batch.batch_api_runner import BatchApiRun
from batch_pipeline.batch.partitions import Partition
from batch_pipeline.context import ProcessingContext
from batch_pipeline.costs.prices import ModelPrice
from batch_pipeline.costs.spend import SpendLimit
from batch_pipeline.llm.batch_api import BatchApi
from batch_pipeline.llm.options import LlmSettings
from batch_pipeline.llm.provider import LlmProvider
from batch_pipeline.llm.response_format import ResponseFormatMode
from batch_pipeline.outcome import LlmApi
from batch_pipeline.store import DocumentStore
from batch_pipeline.store import provider_batches as provider_batches_module
from batch_pipeline.store.provider_batches import (
    BatchBudget,
    abandon_expired,
    give_up,
    load_batch,
    mark_collected,
    record_preparing,
    record_submitted,
    release_collection,
    renew_lease,
    take_collection,
    take_create_turn,
)
from batch_pipeline.store.run_budgets import spend_of
from batch_pipeline.store.schema import provider_batches
from batch_pipeline_tests.conftest import _make_database, register_memos
from testbed.fake_openai_server import Behaviour, FakeOpenAIServer

CONTEXT = ProcessingContext(model_key="content_compliance", ai_model="gpt-test").pinned(catalogue())
FAST = {"batch_validating_seconds": 0.05, "batch_in_progress_seconds": 0.2, "batch_finalizing_seconds": 0.05}
DOCUMENTS = 6
WAIT = 60  # seconds any one scenario may take before it counts as hung


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch):
    monkeypatch.setattr(batch_api_runner, "PREPARING_RECHECK_SECONDS", 0.05)
    monkeypatch.setattr(batch_api_runner, "FIRST_POLL_SECONDS", 0.05)


class Crash(BaseException):
    """The step's process dies here (SIGKILL, OOM, a lost host): no handler and no cleanup runs."""


class DyingApi(BatchApi):
    """The Batch API as seen by a step that dies at `at`."""

    def __init__(self, client, at: str):
        super().__init__(client, max_attempts=3, retry_max_wait_seconds=0.1)
        self.at = at

    async def upload(self, name, lines):
        if self.at == "before_upload":
            raise Crash(self.at)
        return await super().upload(name, lines)

    async def create(self, *args, **kwargs):
        if self.at == "after_turn":  # the record says creating; the request is never sent
            allowed = kwargs["may_create"]

            def then_die() -> bool:
                if allowed():
                    raise Crash(self.at)
                return False

            kwargs["may_create"] = then_die
        batch = await super().create(*args, **kwargs)
        if self.at == "after_create":  # the provider has the batch; the store never hears its id
            raise Crash(self.at)
        return batch

    async def retrieve(self, batch_id):
        if self.at == "after_id_stored":
            raise Crash(self.at)
        return await super().retrieve(batch_id)


def settings_for(url: str) -> LlmSettings:
    return LlmSettings(
        api_key="sk-test-key", base_url=url, timeout_seconds=10, max_concurrent_requests=8, requests_per_minute=None,
        tokens_per_minute=None, max_attempts=3, rate_limit_wait_seconds=60, retry_max_wait_seconds=0.1,
        max_output_tokens=512, max_repairs=1, response_format=ResponseFormatMode.json_schema,
        batch_poll_max_seconds=0.1, batch_resubmissions=1,
    )  # fmt: skip


def register(store: DocumentStore, run_id: str, count: int = DOCUMENTS) -> list[str]:
    return register_memos(store, run_id, CONTEXT, count)


async def deliver(
    store, server, run_id: str, ids: list[str], dying_at: str | None = None, spend=None, **options
) -> dict:
    """One delivery of the partition's analysis step, as analyse_partition runs it: its own client,
    and so its own owner. The step's status counts."""
    partition = Partition(index=0, project="p", context=CONTEXT, document_ids=ids,
                          response_format=ResponseFormatMode.json_schema, llm_api=LlmApi.batch)  # fmt: skip
    log: list[str] = []
    provider = LlmProvider(settings_for(server.url))
    analyser = provider.analyser(ResponseFormatMode.json_schema, "gpt-test", log.append, spend)
    api = DyingApi(analyser.client, dying_at) if dying_at else BatchApi(analyser.client, 3, 0.1)
    try:
        run = BatchApiRun(store, run_id, partition, analyser, api, server.url, log.append, **options)
        return (await asyncio.wait_for(run.analyse(), WAIT)).status_counts
    finally:
        await analyser.close()


async def reached(gate) -> None:
    assert await asyncio.to_thread(gate.reached.wait, WAIT), "the request never reached the gate"


async def provider_looked_at(server, times: int) -> None:
    """Until batches.list has been called `times` more times (a run waiting on a record looks there)."""
    target = server.batch_api.list_calls + times
    for _ in range(WAIT * 100):
        if server.batch_api.list_calls >= target:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("nobody looked at the provider's batches")


def run_out_leases(store: DocumentStore) -> None:
    """The owners of the records not yet created stalled, or died, longer than their lease ago."""
    long_ago = datetime.now(UTC) - timedelta(days=1)
    values = {"updated_at": long_ago}
    if "lease_until" in provider_batches.c:  # (the same test runs against the code before leases)
        values["lease_until"] = long_ago
    with store.engine.begin() as conn:
        conn.execute(
            provider_batches.update().where(provider_batches.c.state.in_(["preparing", "creating"])).values(values)
        )


def states(store: DocumentStore, run_id: str) -> list[str]:
    with store.engine.connect() as conn:
        query = sa.select(provider_batches.c.state).where(provider_batches.c.run_id == run_id)
        return sorted(conn.scalars(query.order_by(provider_batches.c.created_at)))


def assert_created_once(server: FakeOpenAIServer, ids: list[str]) -> None:
    assert server.batch_creations == 1, f"the provider created {server.batch_creations} batches"
    sent = Counter(custom_id for batch in server.batches.values() for custom_id in batch.custom_ids)
    assert sent == Counter(ids), "a document was sent in more than one batch, or not at all"


def server_for(**behaviour) -> FakeOpenAIServer:
    return FakeOpenAIServer(Behaviour(**{**FAST, **behaviour}))


def test_an_owner_slower_than_its_lease_never_creates_the_batch_another_run_took_over(store):
    """Guarantee: when a record's owner outlives its lease (here: its upload hangs while the lease
    runs out), the run that finds it abandons it only if the provider has no batch for it, then
    sends the documents itself; the owner can then never create its batch (the move to creating
    is refused), and gets its answers from the other run's batch instead (here from the cache, as
    that batch is collected by then). The abandoned record stays abandoned.
    (Before: the slow owner created a second batch and flipped its record back to submitted.)"""
    with server_for() as server:
        ids = register(store, "run-a")
        register(store, "run-b")

        async def scenario():
            upload = server.batch_api.hold_next("upload")
            slow = asyncio.create_task(deliver(store, server, "run-a", ids))
            await reached(upload)
            run_out_leases(store)
            other = await deliver(store, server, "run-b", ids)
            upload.open()
            return await slow, other

        slow, other = asyncio.run(scenario())
    assert_created_once(server, ids)
    assert slow == other == {"ok": DOCUMENTS}
    assert states(store, "run-a") == ["abandoned"] and states(store, "run-b") == ["collected"]


def test_a_create_that_reaches_the_provider_after_its_lease_ran_out_is_cancelled(store):
    """The one interleaving a lease cannot exclude, because batches.create has no idempotency key:
    the owner's create request was already sent when its lease ran out, and the provider lists the
    batch only after another run has abandoned the record and sent the documents again.
    Guarantee: the late batch is never adopted. Its owner cancels it as soon as the create answers,
    before any of its lines has run, so nothing is paid twice. Its documents are answered from the
    other run's batch."""
    with server_for(batch_validating_seconds=1.0) as server:  # as at OpenAI, a batch validates a while first
        ids = register(store, "run-a")
        register(store, "run-b")

        async def scenario():
            in_flight = server.batch_api.hold_next("create_received")
            slow = asyncio.create_task(deliver(store, server, "run-a", ids))
            await reached(in_flight)
            run_out_leases(store)
            other = await deliver(store, server, "run-b", ids)
            in_flight.open()
            return await slow, other

        slow, other = asyncio.run(scenario())
    assert slow == other == {"ok": DOCUMENTS}
    first, late = sorted(server.batches.values(), key=lambda batch: batch.seq)
    assert first.status(first.created + 60) == "completed" and late.cancel_at is not None and not late.answered
    assert states(store, "run-a") == ["abandoned"]


@pytest.mark.parametrize("runs", [("run-a", "run-a"), ("run-a", "run-b")], ids=["one_step_twice", "two_runs"])
def test_two_workers_that_both_find_no_open_batch_create_one(any_store, monkeypatch, runs):
    """Guarantee: recording a batch claims its documents atomically (a primary key on the claims,
    INSERT ... ON CONFLICT DO NOTHING), so two workers that both found no batch for the same
    documents at the same moment create one batch: the one that claims second polls the batch of
    the one that claimed first. This covers a step that Celery redelivers (same run) and two runs
    launched together on the same documents. (Before: one batch each, or an IntegrityError.)"""
    both_looked = threading.Barrier(2, timeout=WAIT)
    seen = threading.local()
    real = batch_api_runner.open_batches_holding

    def look_together(*args):
        found = real(*args)
        if not getattr(seen, "looked", False):
            seen.looked = True
            both_looked.wait()
        return found

    monkeypatch.setattr(batch_api_runner, "open_batches_holding", look_together)
    with server_for() as server:
        ids = register(any_store, runs[0])
        register(any_store, runs[1])
        with ThreadPoolExecutor(2) as pool:
            counts = list(pool.map(lambda run_id: asyncio.run(deliver(any_store, server, run_id, ids)), runs))
    assert_created_once(server, ids)
    assert counts == [{"ok": DOCUMENTS}] * 2
    for run_id in set(runs):
        assert any_store.status_counts(run_id) == {"ok": DOCUMENTS}


@pytest.mark.parametrize("listed_metadata", [True, False], ids=["listed_with_metadata", "listed_without_metadata"])
@pytest.mark.parametrize("dying_at", ["before_upload", "after_turn", "after_create", "after_id_stored"])
def test_a_step_that_died_anywhere_is_finished_by_the_next_run_with_one_batch(store, dying_at, listed_metadata):
    """Guarantee: whichever point a step dies at, the next run (a resume) sends every document
    exactly once. If it died before create (in preparing, or in creating before the request left),
    the record is abandoned once its lease has run out and the provider has no batch for it. If
    it died after create but before the id was stored, the batch is found at the provider by its
    key or, where batches.list shows no metadata, by the input file id recorded before create. If
    it died after the id was stored, the batch is polled. (Before: a provider that lists no
    metadata never had its batch found, and the documents were sent again.)"""
    with server_for(batch_list_metadata=listed_metadata) as server:
        ids = register(store, "run-a")
        with pytest.raises(Crash):
            asyncio.run(deliver(store, server, "run-a", ids, dying_at=dying_at))
        run_out_leases(store)  # however long ago it died
        register(store, "resumed")
        counts = asyncio.run(deliver(store, server, "resumed", ids))
    assert_created_once(server, ids)
    assert counts == {"ok": DOCUMENTS}
    created_before_dying = dying_at in ("after_create", "after_id_stored")
    assert states(store, "run-a") == ["collected" if created_before_dying else "abandoned"]


@pytest.mark.parametrize("held_at", ["upload", "create_received", "create_answered"])
def test_a_redelivered_step_only_polls_the_batch_its_first_delivery_is_creating(store, held_at):
    """Guarantee (Celery redelivers a step that holds its message past RabbitMQ's consumer_timeout
    while the first delivery still runs): the second delivery finds the first's record under a
    live lease and never abandons or creates it. It waits for the batch id, or finds the batch at
    the provider, and polls it. Both deliveries store every document's result in the run's one row
    per document: the same answer, written twice."""
    with server_for(batch_list_metadata=False) as server:
        ids = register(store, "run-a")

        async def scenario():
            gate = server.batch_api.hold_next(held_at)
            first = asyncio.create_task(deliver(store, server, "run-a", ids))
            await reached(gate)
            second = asyncio.create_task(deliver(store, server, "run-a", ids))
            await provider_looked_at(server, times=1 if held_at == "create_answered" else 3)
            assert server.batch_creations == (1 if held_at == "create_answered" else 0)
            gate.open()
            return await first, await second

        first, second = asyncio.run(scenario())
    assert_created_once(server, ids)
    assert first == second == {"ok": DOCUMENTS}
    rows = store.results("run-a")
    assert len(rows) == DOCUMENTS and (rows["status"] == "ok").all()


@pytest.mark.parametrize("listed_metadata", [True, False], ids=["listed_with_metadata", "listed_without_metadata"])
def test_a_resume_while_the_original_run_is_still_alive_polls_its_batch(store, listed_metadata):
    """Guarantee: a second run on the same documents (a resume, or the same config launched
    again) while the original run is still creating its batch finds that batch at the provider
    (by key, or by input file) and polls it to the end. It never creates another, even while the
    original run has not yet heard back from batches.create."""
    with server_for(batch_list_metadata=listed_metadata) as server:
        ids = register(store, "original")
        register(store, "resumed")

        async def scenario():
            answer = server.batch_api.hold_next("create_answered")
            original = asyncio.create_task(deliver(store, server, "original", ids))
            await reached(answer)
            resumed = await deliver(store, server, "resumed", ids)
            answer.open()
            return await original, resumed

        original, resumed = asyncio.run(scenario())
    assert_created_once(server, ids)
    assert original == resumed == {"ok": DOCUMENTS}


def test_a_live_owner_keeps_its_lease_however_long_its_upload_takes(store):
    """Guarantee: an owner renews its lease while it lives, so a run that waits on its record
    never abandons it, however long the upload takes: several leases pass, and one batch is created."""
    lease = 1.5  # renewed five times a lease: a stall of a second on a loaded machine still leaves it held
    with server_for() as server:
        ids = register(store, "run-a")
        register(store, "run-b")

        async def scenario():
            upload = server.batch_api.hold_next("upload")
            owner = asyncio.create_task(deliver(store, server, "run-a", ids, lease_seconds=lease))
            await reached(upload)
            waiting = asyncio.create_task(deliver(store, server, "run-b", ids, lease_seconds=lease))
            await asyncio.sleep(3 * lease)  # time has to pass for a lease to run out: a sleep is the test
            assert states(store, "run-a") == ["preparing"] and server.batch_creations == 0
            upload.open()
            return await owner, await waiting

        owner, waiting = asyncio.run(scenario())
    assert_created_once(server, ids)
    assert owner == waiting == {"ok": DOCUMENTS}


def test_an_abandoned_record_never_moves_again(any_store):
    """Guarantee: each move of a record is one conditional UPDATE. Only its owner, and only while
    its lease holds, may move it to creating. Only a record whose lease has run out can be
    abandoned, and only once. Nothing moves an abandoned record again: no create turn, no batch id,
    no collection. Its documents are free for the next record at once."""
    row = record_preparing(any_store, "http://provider/v1", "context", "run-a", 0, ["d1", "d2"], "owner-a", 60).batch
    key = row.batch_key
    assert not take_create_turn(any_store, key, "owner-b", "file-b", 60), "only the owner may create"
    assert not abandon_expired(any_store, key), "the owner's lease holds"
    assert take_create_turn(any_store, key, "owner-a", "file-a", 60)
    assert take_create_turn(any_store, key, "owner-a", "file-a", 60), "a retry by the owner, lease renewed"
    run_out_leases(any_store)
    assert not take_create_turn(any_store, key, "owner-a", "file-a", 60), "a lease that ran out is lost"
    assert not renew_lease(any_store, key, "owner-a", 60)
    assert abandon_expired(any_store, key)
    assert not abandon_expired(any_store, key), "abandoned by one caller only"
    assert not record_submitted(any_store, key, "batch_1", "validating")
    assert not take_collection(any_store, key, "owner-a", 60)
    assert not mark_collected(any_store, key, "owner-a", 0.0)
    now = load_batch(any_store, key)
    assert (now.state, now.batch_id, now.input_file_id) == ("abandoned", None, "file-a")
    again = record_preparing(any_store, "http://provider/v1", "context", "run-a", 0, ["d1", "d2"], "owner-b", 60).batch
    assert again is not None and again.batch_key != key and sorted(again.document_ids) == ["d1", "d2"]


def test_records_made_at_the_same_moment_never_share_a_document(any_store):
    """Guarantee: recording a batch claims its documents in the same transaction, with INSERT ...
    ON CONFLICT DO NOTHING on the claims' primary key (endpoint, context, document). So however
    many workers record overlapping batches at once, each document is held by one open record.
    A record that holds none of its documents is not made at all."""
    documents = [f"d{i:03d}" for i in range(300)]
    wanted = [documents[:200], documents[100:], documents[::2], documents[1::2], documents, documents[:10]]
    together = threading.Barrier(len(wanted), timeout=WAIT)

    def record(ids: list[str]):
        together.wait()
        return record_preparing(
            any_store, "http://provider/v1", "context", "run-a", 0, ids, f"owner-{ids[0]}", 60
        ).batch

    with ThreadPoolExecutor(len(wanted)) as pool:
        made = [row for row in pool.map(record, wanted) if row is not None]
    held = Counter(d for row in made for d in row.document_ids)
    assert set(held) == set(documents) and set(held.values()) == {1}
    for row in made:
        assert sorted(load_batch(any_store, row.batch_key).document_ids) == sorted(row.document_ids)


NEWER_COLUMNS = ("owner", "lease_until", "reserved_usd", "budget_run_id")


def test_a_store_from_before_leases_gets_them_and_its_records_still_expire(tmp_path, request):
    """Guarantee: a store whose provider_batches table predates owner and lease_until gets both
    columns (store/migrations.py add_new_columns), and the claims table, from create_schema, on
    SQLite and PostgreSQL. Its records without a lease count as expired once they have gone
    untouched for a lease's length."""
    for dialect in ("sqlite", "postgresql"):
        drop = None
        if dialect == "sqlite":
            url = f"sqlite:///{tmp_path / 'before_leases.sqlite'}"
        else:
            url, drop = _make_database(request.getfixturevalue("postgres_server"), "leases")
        engine = sa.create_engine(url)
        old = sa.Table(
            "provider_batches",
            sa.MetaData(),
            *(sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable) for c in provider_batches.c
              if c.name not in NEWER_COLUMNS),
        )  # fmt: skip
        now = datetime.now(UTC)
        with engine.begin() as conn:
            old.create(conn)
            for key, touched in (("stale", now - timedelta(hours=1)), ("fresh", now)):
                conn.execute(old.insert().values(
                    batch_key=key, endpoint="e", context_key="c", run_id="r", round=0, state="preparing",
                    created_at=touched, updated_at=touched,
                ))  # fmt: skip
        engine.dispose()
        store = DocumentStore(url)
        store.create_schema()
        store.create_schema()
        columns = {c["name"] for c in sa.inspect(store.engine).get_columns("provider_batches")}
        assert set(NEWER_COLUMNS) <= columns
        assert "provider_batch_claims" in sa.inspect(store.engine).get_table_names()
        assert abandon_expired(store, "stale", lease_seconds=600) and not abandon_expired(store, "fresh", 600)
        store.close()
        if drop:
            drop()


def test_two_deliveries_that_both_reach_a_batchs_end_collect_it_once(store):
    """Guarantee: collecting a batch costs money too (each answer that needs a repair gets an online
    request) and settles its reservation; one process collects it, holding a lease (submitted ->
    collecting -> collected). A second delivery of the step that reaches the batch's end meanwhile
    waits, then takes what the collector stored. Here every answer needs a repair: each document
    is repaired once, and the budget settled once (before, both deliveries repaired every document
    and both settled the batch)."""
    price = ModelPrice(input=100.0, output=400.0, batch_input=100.0, batch_output=400.0)  # one rate: one sum
    with server_for(malformed_rate=1.0) as server:
        ids = register(store, "run-a")

        async def scenario():
            budgets = [SpendLimit(store, "run-a", 10.0, price, max_output_tokens=512) for _ in range(2)]
            return await asyncio.gather(*(deliver(store, server, "run-a", ids, spend=b) for b in budgets))

        first, second = asyncio.run(scenario())
        repairs = Counter(r.document for r in server.requests if r.is_repair)
    assert_created_once(server, ids)
    assert first == second == {"invalid_output": DOCUMENTS}
    assert len(repairs) == DOCUMENTS and set(repairs.values()) == {1}, repairs
    rows = store.results("run-a")
    paid = (rows["input_tokens"].sum() * 100.0 + rows["output_tokens"].sum() * 400.0) / 1e6
    _, spent, reserved = spend_of(store, "run-a")
    assert spent == pytest.approx(paid) and reserved == pytest.approx(0)
    assert states(store, "run-a") == ["collected"]


def test_one_collector_at_a_time_and_a_records_reservation_is_settled_or_released_once(any_store):
    """Guarantee: only one owner collects a batch; another takes over only once the collector's lease
    has run out, and the one that lost it can no longer mark it collected. A record's reservation
    (taken with its claims) is settled at the batch's cost when it is collected, released when it is
    abandoned: once either way."""
    SpendLimit(any_store, "run-a", 1.0, ModelPrice(input=1.0, output=1.0), max_output_tokens=1)
    budget = BatchBudget("run-a", 1.0, {"d1": 0.3, "d2": 0.3, "d3": 0.3, "d4": 0.3})
    made = record_preparing(any_store, "e", "c", "run-a", 0, ["d1", "d2", "d3", "d4"], "owner-a", 60, budget)
    assert sorted(made.batch.document_ids) == ["d1", "d2", "d3"] and made.over_budget == ["d4"]
    assert spend_of(any_store, "run-a") == (1.0, 0.0, pytest.approx(0.9))
    key = made.batch.batch_key
    assert not take_collection(any_store, key, "owner-b", 60), "no batch id yet"
    assert record_submitted(any_store, key, "batch_1", "validating")
    assert take_collection(any_store, key, "owner-b", 60)
    assert not take_collection(any_store, key, "owner-c", 60), "owner-b collects"
    assert not release_collection(any_store, key, "owner-c"), "only the collector hands it back"
    assert release_collection(any_store, key, "owner-b"), "a collector that was stopped hands it back"
    assert take_collection(any_store, key, "owner-b", 60), "at once, without waiting for its lease"
    assert renew_lease(any_store, key, "owner-b", 60)
    with any_store.engine.begin() as conn:
        conn.execute(provider_batches.update().values(lease_until=datetime.now(UTC) - timedelta(seconds=1)))
    assert take_collection(any_store, key, "owner-c", 60), "owner-b's lease ran out"
    assert not mark_collected(any_store, key, "owner-b", 0.2)
    assert mark_collected(any_store, key, "owner-c", 0.25)
    assert not mark_collected(any_store, key, "owner-c", 0.25)
    assert spend_of(any_store, "run-a") == (1.0, pytest.approx(0.25), pytest.approx(0.0))

    dropped = record_preparing(
        any_store, "e", "c", "run-a", 0, ["d5"], "owner-d", 60, BatchBudget("run-a", 1.0, {"d5": 0.5})
    )
    assert spend_of(any_store, "run-a")[2] == pytest.approx(0.5)
    assert give_up(any_store, dropped.batch.batch_key, "owner-d")
    assert not give_up(any_store, dropped.batch.batch_key, "owner-d")
    assert spend_of(any_store, "run-a") == (1.0, pytest.approx(0.25), pytest.approx(0.0))


def test_leases_are_read_on_the_databases_clock(postgres_store_url, monkeypatch):
    """Guarantee: on PostgreSQL a lease's end is set and compared with the database's now(), so a
    worker whose clock runs an hour fast neither takes over a live lease nor loses its own. (On
    SQLite the store is a file on one machine: its clock is the host's.)"""
    store = DocumentStore(postgres_store_url)
    store.create_schema()
    key = record_preparing(store, "e", "c", "run-a", 0, ["d1"], "owner-a", 60).batch.batch_key
    real_now = provider_batches_module._now
    monkeypatch.setattr(provider_batches_module, "_now", lambda: real_now() + timedelta(hours=1))
    assert not abandon_expired(store, key, 60), "a fast clock took over a live lease"
    assert take_create_turn(store, key, "owner-a", "file-a", 60), "a fast clock lost its own lease"
    monkeypatch.setattr(provider_batches_module, "_now", lambda: real_now() - timedelta(hours=1))
    assert renew_lease(store, key, "owner-a", 60)
    store.close()
