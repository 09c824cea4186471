"""The response format an endpoint and model accepted when last probed, remembered for a day: a
run that finds it skips the probe, and a run that sees it rejected forgets it (the next probes)."""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from batch_pipeline.store.document_store import DocumentStore
from batch_pipeline.store.schema import response_formats

REMEMBERED_FOR = timedelta(days=1)


def remembered_response_format(store: DocumentStore, endpoint: str, ai_model: str) -> str | None:
    query = sa.select(response_formats.c.mode, response_formats.c.settled_at).where(
        response_formats.c.endpoint == endpoint, response_formats.c.ai_model == ai_model
    )
    with store.engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    settled_at = row.settled_at if row.settled_at.tzinfo else row.settled_at.replace(tzinfo=UTC)  # SQLite
    return row.mode if datetime.now(UTC) - settled_at < REMEMBERED_FOR else None


def remember_response_format(store: DocumentStore, endpoint: str, ai_model: str, mode: str) -> None:
    row = {"endpoint": endpoint, "ai_model": ai_model, "mode": mode, "settled_at": datetime.now(UTC)}
    try:
        with store.engine.begin() as conn:
            _delete(conn, endpoint, ai_model)
            conn.execute(response_formats.insert().values(**row))
    except sa.exc.IntegrityError:
        pass  # a concurrent run remembered it first


def forget_response_format(store: DocumentStore, endpoint: str, ai_model: str) -> None:
    with store.engine.begin() as conn:
        _delete(conn, endpoint, ai_model)


def _delete(conn: sa.Connection, endpoint: str, ai_model: str) -> None:
    conn.execute(
        response_formats.delete().where(
            response_formats.c.endpoint == endpoint, response_formats.c.ai_model == ai_model
        )
    )
