"""What went to a provider's Batch API, recorded before the provider is asked: a batch's key and
documents first (``preparing``), then its input file, then its batch id (``submitted``), and
``collected`` once its results are stored (``abandoned``: its run died before creating it). A run that finds one of its documents in a batch that
is not collected polls that batch instead of sending the document again."""

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from pydantic import BaseModel

from batch_pipeline.store.document_store import DocumentStore, in_chunks
from batch_pipeline.store.schema import analysis_results, batch_runs, provider_batch_documents, provider_batches

PREPARING, SUBMITTED, COLLECTED = "preparing", "submitted", "collected"
ABANDONED = "abandoned"  # recorded by a run that died before creating it; no batch exists
OPEN = (PREPARING, SUBMITTED)


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
    document_ids: list[str]


def batch_key(run_id: str, round_: int, document_ids: Sequence[str]) -> str:
    """Deterministic for what a run sends in a round; put in the batch's metadata."""
    text = "\0".join([run_id, str(round_), *sorted(document_ids)])
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def _now() -> datetime:
    return datetime.now(UTC)


def record_preparing(
    store: DocumentStore,
    key: str,
    endpoint: str,
    context_key: str,
    run_id: str,
    round_: int,
    document_ids: Sequence[str],
) -> ProviderBatch:
    """Record a batch about to be created (idempotent: a step retried in the same run finds its row)."""
    with store.engine.connect() as conn:
        if conn.scalar(sa.select(sa.func.count()).where(provider_batches.c.batch_key == key)):
            return load_batch(store, key)
    now = _now()
    row = {
        "batch_key": key,
        "endpoint": endpoint,
        "context_key": context_key,
        "run_id": run_id,
        "round": round_,
        "state": PREPARING,
        "created_at": now,
        "updated_at": now,
    }
    with store.engine.begin() as conn:
        conn.execute(provider_batches.insert().values(**row))
        for chunk in in_chunks(list(document_ids)):
            conn.execute(provider_batch_documents.insert(), [{"batch_key": key, "document_id": d} for d in chunk])
    return ProviderBatch(
        **row,
        input_file_id=None,
        batch_id=None,
        provider_status=None,
        request_counts=None,
        document_ids=list(document_ids),
    )


def update_batch(store: DocumentStore, key: str, **values) -> None:
    """Set input_file_id, batch_id, state, provider_status or request_counts (a dict)."""
    if "request_counts" in values and values["request_counts"] is not None:
        values["request_counts"] = json.dumps(values["request_counts"], sort_keys=True)
    with store.engine.begin() as conn:
        conn.execute(
            provider_batches.update().where(provider_batches.c.batch_key == key).values(**values, updated_at=_now())
        )


def open_batches_holding(
    store: DocumentStore, endpoint: str, context_key: str, document_ids: Sequence[str]
) -> list[ProviderBatch]:
    """Batches not yet collected, for this endpoint and context, that hold any of these documents."""
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


def abandon_if_stale(store: DocumentStore, key: str, stale_seconds: float) -> bool:
    """Close a batch that was recorded but never got its id, once its run has not touched it for
    stale_seconds (its run died: a live one records the id within seconds of creating it).
    True when this call closed it; only one caller can."""
    b = provider_batches.c
    cutoff = _now() - timedelta(seconds=stale_seconds)
    statement = (
        provider_batches.update()
        .where(b.batch_key == key, b.state == PREPARING, b.batch_id.is_(None), b.updated_at < cutoff)
        .values(state=ABANDONED, updated_at=_now())
    )
    with store.engine.begin() as conn:
        return conn.execute(statement).rowcount == 1


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
    created_at = values["created_at"]
    values["created_at"] = created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)  # SQLite
    values.pop("updated_at")
    return ProviderBatch(**values, document_ids=document_ids)
