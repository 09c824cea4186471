"""What went to a provider's Batch API, recorded before the provider is asked, so that a batch is
created at most once and collected once. A record moves only forward, each move one conditional
UPDATE:

- ``preparing``: its documents are claimed (``provider_batch_claims``: a document is held by one
  open batch per endpoint and context), its worst-case cost reserved in its run's budget, and its
  owner holds a lease, renewed while it lives;
- ``creating``: the owner, still holding the lease, recorded its input file and may call
  ``batches.create`` now (and again, on a retry, while the lease holds);
- ``submitted``: its batch id is known;
- ``collecting``: one process (its collector, holding a lease) stores its answers and repairs;
  another takes over only once that lease has run out;
- ``collected``: its answers are stored, its reservation settled at what its lines cost;
- ``abandoned``: never created (its owner gave up, or its lease ran out and the provider has no
  batch for it), its reservation released. Nothing moves an abandoned record again, so its owner
  can no longer create it.

Collected and abandoned records release their documents' claims. Leases are read against the
database's clock (PostgreSQL's ``now()``), so hosts whose clocks disagree still agree on them."""

import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from pydantic import BaseModel

from batch_pipeline.store.document_store import DocumentStore, in_chunks
from batch_pipeline.store.run_budgets import reserve_each, settle_in
from batch_pipeline.store.schema import (
    analysis_results,
    batch_runs,
    provider_batch_claims,
    provider_batch_documents,
    provider_batches,
)

PREPARING, CREATING, SUBMITTED = "preparing", "creating", "submitted"
COLLECTING, COLLECTED, ABANDONED = "collecting", "collected", "abandoned"
OPEN = (PREPARING, CREATING, SUBMITTED, COLLECTING)
UNCREATED = (PREPARING, CREATING)
LEASED = (PREPARING, CREATING, COLLECTING)
CLOSED = (COLLECTED, ABANDONED)
LEASE_SECONDS = 300.0


class ProviderBatch(BaseModel):
    batch_key: str
    endpoint: str
    context_key: str
    run_id: str
    round: int
    input_file_id: str | None
    batch_id: str | None
    state: str
    provider_status: str | None
    request_counts: dict[str, int] | None
    created_at: datetime
    owner: str | None = None
    lease_until: datetime | None = None
    reserved_usd: float | None = None
    budget_run_id: str | None = None
    document_ids: list[str]


@dataclass(frozen=True)
class BatchBudget:
    """The budget a new record's documents are reserved in: run_id's, never past cap (the
    recording run's own max_cost_usd), each document at its worst case."""

    run_id: str
    cap: float
    worst_case_usd: Mapping[str, float]


@dataclass(frozen=True)
class Recorded:
    batch: ProviderBatch | None  # None: no document was both unclaimed and within the budget
    over_budget: list[str]  # unclaimed, but their worst case did not fit: not recorded


def _now() -> datetime:
    return datetime.now(UTC)


def record_preparing(
    store: DocumentStore,
    endpoint: str,
    context_key: str,
    run_id: str,
    round_: int,
    document_ids: Sequence[str],
    owner: str,
    lease_seconds: float = LEASE_SECONDS,
    budget: BatchBudget | None = None,
) -> Recorded:
    """Record a batch about to be created, holding those of the documents no other open batch
    holds and (with a budget) whose worst case still fits it, with `owner`'s lease. Claims and
    reservation are taken in one transaction: no other run or worker can claim or spend meanwhile,
    and a crash leaves neither without the other."""
    key = secrets.token_hex(20)  # new for every record: an abandoned one is never reused
    now = _now()
    claims = [
        {"endpoint": endpoint, "context_key": context_key, "document_id": d, "batch_key": key}
        for d in sorted(document_ids)  # one global order: concurrent claims on PostgreSQL cannot deadlock
    ]
    row = {
        "batch_key": key,
        "endpoint": endpoint,
        "context_key": context_key,
        "run_id": run_id,
        "round": round_,
        "state": PREPARING,
        "owner": owner,
        "created_at": now,
        "updated_at": now,
        "budget_run_id": budget.run_id if budget else None,
    }
    with store.engine.begin() as conn:
        store._insert_if_absent(conn, provider_batch_claims, claims)
        claimed = set(conn.scalars(sa.select(provider_batch_claims.c.document_id).where(_claims_of(key))))
        held = [d for d in document_ids if d in claimed]
        over_budget: list[str] = []
        if budget is not None and held:
            fitting = set(reserve_each(conn, budget.run_id, budget.cap, [(d, budget.worst_case_usd[d]) for d in held]))
            over_budget = [d for d in held if d not in fitting]
            held = [d for d in held if d in fitting]
            if over_budget:
                conn.execute(
                    provider_batch_claims.delete().where(
                        _claims_of(key), provider_batch_claims.c.document_id.in_(over_budget)
                    )
                )
        if not held:
            return Recorded(None, over_budget)
        row["reserved_usd"] = sum(budget.worst_case_usd[d] for d in held) if budget else None
        conn.execute(provider_batches.insert().values(**row, lease_until=_after(conn, lease_seconds)))
        for chunk in in_chunks(held):
            conn.execute(provider_batch_documents.insert(), [{"batch_key": key, "document_id": d} for d in chunk])
    return Recorded(load_batch(store, key), over_budget)


def take_create_turn(store: DocumentStore, key: str, owner: str, input_file_id: str, lease_seconds: float) -> bool:
    """Whether `owner` may call ``batches.create`` now: only while its lease holds, and the record
    has no batch id and is not abandoned. Records the input file (so the batch can be found by it
    where the provider lists no metadata) and moves the record to ``creating``, lease renewed."""
    b = provider_batches.c
    return _move(
        store,
        key,
        lambda now: [*_held_by(owner, now), b.state.in_(UNCREATED), b.batch_id.is_(None)],
        state=CREATING,
        input_file_id=input_file_id,
        lease_seconds=lease_seconds,
    )


def renew_lease(store: DocumentStore, key: str, owner: str, lease_seconds: float) -> bool:
    """Extend `owner`'s lease while it prepares, creates or collects the batch; False once it has lost it."""
    return _move(store, key, lambda now: _held_by(owner, now), lease_seconds=lease_seconds)


def take_collection(store: DocumentStore, key: str, owner: str, lease_seconds: float) -> bool:
    """Whether `owner` collects the batch now: it has its id and nobody collects it, or its
    collector's lease ran out (that process died or stalled). Only one caller wins."""
    b = provider_batches.c
    return _move(
        store,
        key,
        lambda now: [sa.or_(b.state == SUBMITTED, sa.and_(b.state == COLLECTING, b.lease_until <= now))],
        state=COLLECTING,
        owner=owner,
        lease_seconds=lease_seconds,
    )


def give_up(store: DocumentStore, key: str, owner: str) -> bool:
    """`owner` will not create the batch after all (its upload failed): abandoned at once, its
    documents free for the next attempt."""
    b = provider_batches.c
    return _move(
        store, key, lambda now: [b.owner == owner, b.state == PREPARING, b.batch_id.is_(None)], state=ABANDONED
    )


def abandon_expired(store: DocumentStore, key: str, lease_seconds: float = LEASE_SECONDS) -> bool:
    """Abandon a record whose owner's lease ran out before it got a batch id. The caller first made
    sure the provider has no batch for it. True when this call abandoned it; only one caller can.
    (A record from before leases has none: it counts as expired lease_seconds after its last update.)"""
    b = provider_batches.c

    def expired(now) -> list:
        ran_out = sa.or_(
            b.lease_until <= now,
            sa.and_(b.lease_until.is_(None), b.updated_at < _now() - timedelta(seconds=lease_seconds)),
        )
        return [b.state.in_(UNCREATED), b.batch_id.is_(None), ran_out]

    return _move(store, key, expired, state=ABANDONED)


def record_submitted(store: DocumentStore, key: str, batch_id: str, provider_status: str | None) -> bool:
    """Give a record its batch id, once: False when it already has one, or was abandoned."""
    b = provider_batches.c
    where = [b.state.in_(UNCREATED), b.batch_id.is_(None)]
    return _move(store, key, lambda now: where, state=SUBMITTED, batch_id=batch_id, provider_status=provider_status)


def record_progress(
    store: DocumentStore, key: str, provider_status: str, request_counts: dict[str, int] | None
) -> None:
    counts = json.dumps(request_counts, sort_keys=True) if request_counts is not None else None
    _move(store, key, lambda now: [], provider_status=provider_status, request_counts=counts)


def release_collection(store: DocumentStore, key: str, owner: str) -> bool:
    """`owner` stopped collecting (the run was stopped, or failed): back to ``submitted``, so that
    the next run or delivery collects it at once instead of waiting for the lease to run out."""
    b = provider_batches.c
    return _move(store, key, lambda now: [b.state == COLLECTING, b.owner == owner], state=SUBMITTED)


def mark_collected(store: DocumentStore, key: str, owner: str, cost_usd: float | None) -> bool:
    """`owner`, its collector, stored every answer: the record's reservation becomes cost_usd
    (None: unknown, kept at the reservation), in the same transaction. False when it was no longer
    the collector (its lease ran out and another took over)."""
    b = provider_batches.c
    return _move(
        store,
        key,
        lambda now: [b.state == COLLECTING, b.owner == owner],
        state=COLLECTED,
        settle_usd=cost_usd,
    )


def _now_in(conn: sa.Connection):
    """The database's clock on PostgreSQL (when the statement starts: a transaction may have waited
    on a lock); the host's on SQLite (a file on this machine)."""
    if conn.dialect.name == "postgresql":
        return sa.func.statement_timestamp()
    return sa.literal(_now(), provider_batches.c.lease_until.type)


def _after(conn: sa.Connection, seconds: float):
    if conn.dialect.name == "postgresql":
        return sa.func.statement_timestamp() + sa.literal(timedelta(seconds=seconds), sa.Interval())
    return sa.literal(_now() + timedelta(seconds=seconds), provider_batches.c.lease_until.type)


def _held_by(owner: str, now) -> list:
    b = provider_batches.c
    return [b.owner == owner, b.state.in_(LEASED), b.lease_until > now]


def _claims_of(key: str):
    return provider_batch_claims.c.batch_key == key


def _move(
    store: DocumentStore,
    key: str,
    where: Callable[[sa.ColumnElement], list],
    lease_seconds: float | None = None,
    settle_usd: float | None = None,
    **values,
) -> bool:
    """One conditional UPDATE of the record (where: its conditions, given the database's now). A
    record it closes releases its claims, and settles its reservation (abandoned: released;
    collected: at settle_usd), in the same transaction."""
    b = provider_batches.c
    with store.engine.begin() as conn:
        if lease_seconds is not None:
            values["lease_until"] = _after(conn, lease_seconds)
        statement = provider_batches.update().where(b.batch_key == key, *where(_now_in(conn)))
        moved = conn.execute(statement.values(**values, updated_at=_now())).rowcount == 1
        if moved and values.get("state") in CLOSED:
            conn.execute(provider_batch_claims.delete().where(_claims_of(key)))
            held = conn.execute(sa.select(b.reserved_usd, b.budget_run_id).where(b.batch_key == key)).one()
            if held.budget_run_id is not None and held.reserved_usd:
                cost = 0.0 if values["state"] == ABANDONED else settle_usd
                settle_in(conn, held.budget_run_id, held.reserved_usd, held.reserved_usd if cost is None else cost)
    return moved


def open_batches_holding(
    store: DocumentStore, endpoint: str, context_key: str, document_ids: Sequence[str]
) -> list[ProviderBatch]:
    """Batches not yet collected or abandoned, for this endpoint and context, that hold any of these documents."""
    b, d = provider_batches.c, provider_batch_documents.c
    keys: set[str] = set()
    with store.engine.connect() as conn:
        for chunk in in_chunks(list(document_ids), 500):
            query = (
                sa.select(b.batch_key)
                .join_from(provider_batches, provider_batch_documents, b.batch_key == d.batch_key)
                .where(d.document_id.in_(chunk), b.endpoint == endpoint, b.context_key == context_key)
                .where(b.state.in_(OPEN))
                .distinct()
            )
            keys.update(conn.scalars(query))
    return [load_batch(store, key) for key in sorted(keys)]


def uncreated_and_expired(store: DocumentStore, budget_run_id: str) -> list[ProviderBatch]:
    """Records of this budget that never got a batch id and whose owner's lease has run out: a
    dead run's, whose reservation would otherwise stay held if no later run adopts its documents."""
    b = provider_batches.c
    with store.engine.connect() as conn:
        query = sa.select(b.batch_key).where(
            b.budget_run_id == budget_run_id,
            b.state.in_(UNCREATED),
            b.batch_id.is_(None),
            b.lease_until <= _now_in(conn),
        )
        keys = list(conn.scalars(query))
    return [load_batch(store, key) for key in keys]


def batches_of_run(store: DocumentStore, run_id: str) -> list[ProviderBatch]:
    """The batches a run submitted, and those it adopted (they hold its documents, under its
    context), oldest first."""
    b, d, r = provider_batches.c, provider_batch_documents.c, analysis_results.c
    its_documents = sa.select(r.document_id).where(r.run_id == run_id)
    its_context = sa.select(batch_runs.c.context_key).where(batch_runs.c.run_id == run_id).scalar_subquery()
    adopted = (
        sa.select(b.batch_key)
        .join_from(provider_batches, provider_batch_documents, b.batch_key == d.batch_key)
        .where(d.document_id.in_(its_documents), b.context_key == its_context)
    )
    query = sa.select(b.batch_key).where(sa.or_(b.run_id == run_id, b.batch_key.in_(adopted)))
    with store.engine.connect() as conn:
        keys = list(conn.scalars(query.order_by(b.created_at)))
    return [load_batch(store, key) for key in keys]


def load_batch(store: DocumentStore, key: str) -> ProviderBatch:
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(provider_batches).where(provider_batches.c.batch_key == key)).one()
        document_ids = list(
            conn.scalars(
                sa.select(provider_batch_documents.c.document_id).where(provider_batch_documents.c.batch_key == key)
            )
        )
    values = row._asdict()
    values["request_counts"] = json.loads(values["request_counts"]) if values["request_counts"] else None
    for name in ("created_at", "lease_until"):
        if values[name] is not None and values[name].tzinfo is None:  # SQLite
            values[name] = values[name].replace(tzinfo=UTC)
    values.pop("updated_at")
    return ProviderBatch(**values, document_ids=document_ids)
