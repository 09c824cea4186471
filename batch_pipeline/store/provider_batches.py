"""What went to a provider's Batch API, recorded before the provider is asked, so that a batch is
created at most once. A record moves only forward, each move one conditional UPDATE:

- ``preparing``: its documents are claimed (``provider_batch_claims``: a document is held by one
  open batch per endpoint and context) and its owner holds a lease, renewed while it lives;
- ``creating``: the owner, still holding the lease, recorded its input file and may call
  ``batches.create`` now (and again, on a retry, while the lease holds);
- ``submitted``: its batch id is known; ``collected`` once its results are stored;
- ``abandoned``: never created (its owner gave up, or its lease ran out and the provider has no
  batch for it). Nothing moves an abandoned record again, so its owner can no longer create it.

Collected and abandoned records release their documents' claims."""

import json
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from pydantic import BaseModel

from batch_pipeline.store.document_store import DocumentStore, in_chunks
from batch_pipeline.store.schema import (
    analysis_results,
    batch_runs,
    provider_batch_claims,
    provider_batch_documents,
    provider_batches,
)

PREPARING, CREATING, SUBMITTED, COLLECTED, ABANDONED = "preparing", "creating", "submitted", "collected", "abandoned"
OPEN = (PREPARING, CREATING, SUBMITTED)
UNCREATED = (PREPARING, CREATING)
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
    document_ids: list[str]


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
) -> ProviderBatch | None:
    """Record a batch about to be created, holding those of the documents no other open batch
    holds (claimed in the same transaction: no other run or worker can claim them meanwhile), with
    `owner`'s lease. None when another open batch holds every one of them."""
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
        "lease_until": now + timedelta(seconds=lease_seconds),
        "created_at": now,
        "updated_at": now,
    }
    with store.engine.begin() as conn:
        store._insert_if_absent(conn, provider_batch_claims, claims)
        claimed = set(conn.scalars(sa.select(provider_batch_claims.c.document_id).where(_claims_of(key))))
        if not claimed:
            return None
        held = [d for d in document_ids if d in claimed]
        conn.execute(provider_batches.insert().values(**row))
        for chunk in in_chunks(held):
            conn.execute(provider_batch_documents.insert(), [{"batch_key": key, "document_id": d} for d in chunk])
    fields = {"input_file_id": None, "batch_id": None, "provider_status": None, "request_counts": None}
    return ProviderBatch(**row, **fields, document_ids=held)


def take_create_turn(store: DocumentStore, key: str, owner: str, input_file_id: str, lease_seconds: float) -> bool:
    """Whether `owner` may call ``batches.create`` now: only while its lease holds, and the record
    has no batch id and is not abandoned. Records the input file (so the batch can be found by it
    where the provider lists no metadata) and moves the record to ``creating``, lease renewed."""
    return _move(
        store, key, _held_by(owner), state=CREATING, input_file_id=input_file_id, lease_until=_lease(lease_seconds)
    )


def renew_lease(store: DocumentStore, key: str, owner: str, lease_seconds: float) -> bool:
    """Extend `owner`'s lease while it prepares or creates the batch; False once it has lost it."""
    return _move(store, key, _held_by(owner), lease_until=_lease(lease_seconds))


def give_up(store: DocumentStore, key: str, owner: str) -> bool:
    """`owner` will not create the batch after all (its upload failed): abandoned at once, its
    documents free for the next attempt."""
    b = provider_batches.c
    return _move(store, key, [b.owner == owner, b.state == PREPARING, b.batch_id.is_(None)], state=ABANDONED)


def abandon_expired(store: DocumentStore, key: str, lease_seconds: float = LEASE_SECONDS) -> bool:
    """Abandon a record whose owner's lease ran out before it got a batch id. The caller first made
    sure the provider has no batch for it. True when this call abandoned it; only one caller can.
    (A record from before leases has none: it counts as expired lease_seconds after its last update.)"""
    b = provider_batches.c
    now = _now()
    expired = sa.or_(
        b.lease_until <= now,
        sa.and_(b.lease_until.is_(None), b.updated_at < now - timedelta(seconds=lease_seconds)),
    )
    return _move(store, key, [b.state.in_(UNCREATED), b.batch_id.is_(None), expired], state=ABANDONED)


def record_submitted(store: DocumentStore, key: str, batch_id: str, provider_status: str | None) -> bool:
    """Give a record its batch id, once: False when it already has one, or was abandoned."""
    b = provider_batches.c
    where = [b.state.in_(UNCREATED), b.batch_id.is_(None)]
    return _move(store, key, where, state=SUBMITTED, batch_id=batch_id, provider_status=provider_status)


def record_progress(
    store: DocumentStore, key: str, provider_status: str, request_counts: dict[str, int] | None
) -> None:
    counts = json.dumps(request_counts, sort_keys=True) if request_counts is not None else None
    _move(store, key, [], provider_status=provider_status, request_counts=counts)


def mark_collected(store: DocumentStore, key: str) -> None:
    _move(store, key, [provider_batches.c.state == SUBMITTED], state=COLLECTED)


def _lease(seconds: float) -> datetime:
    return _now() + timedelta(seconds=seconds)


def _held_by(owner: str) -> list:
    b = provider_batches.c
    return [b.owner == owner, b.state.in_(UNCREATED), b.batch_id.is_(None), b.lease_until > _now()]


def _claims_of(key: str):
    return provider_batch_claims.c.batch_key == key


def _move(store: DocumentStore, key: str, where: list, **values) -> bool:
    """One conditional UPDATE of the record; a record it closes releases its claims in the same transaction."""
    statement = (
        provider_batches.update().where(provider_batches.c.batch_key == key, *where).values(**values, updated_at=_now())
    )
    with store.engine.begin() as conn:
        moved = conn.execute(statement).rowcount == 1
        if moved and values.get("state") in CLOSED:
            conn.execute(provider_batch_claims.delete().where(_claims_of(key)))
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
