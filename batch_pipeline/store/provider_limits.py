"""The rate limits each provider, model and key (by fingerprint) last showed, remembered for a day:
a run in a new process paces to them from its first request instead of scouting again."""

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from batch_pipeline.store.document_store import DocumentStore
from batch_pipeline.store.schema import provider_limits

REMEMBERED_FOR = timedelta(days=1)


def remembered_limits(store: DocumentStore, fingerprint: str) -> dict[str, str] | None:
    query = sa.select(provider_limits.c.limits, provider_limits.c.learned_at).where(
        provider_limits.c.fingerprint == fingerprint
    )
    with store.engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    learned_at = row.learned_at if row.learned_at.tzinfo else row.learned_at.replace(tzinfo=UTC)  # SQLite
    return json.loads(row.limits) if datetime.now(UTC) - learned_at < REMEMBERED_FOR else None


def remember_limits(store: DocumentStore, fingerprint: str, limits: dict[str, str]) -> None:
    row = {"fingerprint": fingerprint, "limits": json.dumps(limits, sort_keys=True), "learned_at": datetime.now(UTC)}
    try:
        with store.engine.begin() as conn:
            conn.execute(provider_limits.delete().where(provider_limits.c.fingerprint == fingerprint))
            conn.execute(provider_limits.insert().values(**row))
    except sa.exc.IntegrityError:
        pass  # a concurrent step remembered them first
