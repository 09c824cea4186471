"""What a provider showed, remembered for a day, so a run in a new process need not find it out again:

- the rate limits each provider, model and key (by fingerprint) last showed: a run paces to them
  from its first request instead of scouting again;
- the response format an endpoint and model accepted when last probed: a run that finds it skips
  the probe, and a run that sees it rejected forgets it (the next probes)."""

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from batch_pipeline.store.document_store import DocumentStore
from batch_pipeline.store.schema import provider_limits, response_formats

REMEMBERED_FOR = timedelta(days=1)


class _Remembered:
    """One value per key in `table`, good for REMEMBERED_FOR after it was written at `time_column`."""

    def __init__(self, table: sa.Table, value_column: str, time_column: str):
        self.table, self.value, self.time = table, table.c[value_column], table.c[time_column]

    def recall(self, store: DocumentStore, **key: str) -> str | None:
        with store.engine.connect() as conn:
            row = conn.execute(sa.select(self.value, self.time).where(*self._is(key))).first()
        if row is None:
            return None
        written = row[1] if row[1].tzinfo else row[1].replace(tzinfo=UTC)  # SQLite
        return row[0] if datetime.now(UTC) - written < REMEMBERED_FOR else None

    def remember(self, store: DocumentStore, value: str, **key: str) -> None:
        row = {**key, self.value.name: value, self.time.name: datetime.now(UTC)}
        try:
            with store.engine.begin() as conn:
                conn.execute(self.table.delete().where(*self._is(key)))
                conn.execute(self.table.insert().values(**row))
        except sa.exc.IntegrityError:
            pass  # a concurrent step remembered it first

    def forget(self, store: DocumentStore, **key: str) -> None:
        with store.engine.begin() as conn:
            conn.execute(self.table.delete().where(*self._is(key)))

    def _is(self, key: dict[str, str]) -> list:
        return [self.table.c[name] == value for name, value in key.items()]


_LIMITS = _Remembered(provider_limits, "limits", "learned_at")
_FORMATS = _Remembered(response_formats, "mode", "settled_at")


def remembered_limits(store: DocumentStore, fingerprint: str) -> dict[str, str] | None:
    limits = _LIMITS.recall(store, fingerprint=fingerprint)
    return json.loads(limits) if limits is not None else None


def remember_limits(store: DocumentStore, fingerprint: str, limits: dict[str, str]) -> None:
    _LIMITS.remember(store, json.dumps(limits, sort_keys=True), fingerprint=fingerprint)


def remembered_response_format(store: DocumentStore, endpoint: str, ai_model: str) -> str | None:
    return _FORMATS.recall(store, endpoint=endpoint, ai_model=ai_model)


def remember_response_format(store: DocumentStore, endpoint: str, ai_model: str, mode: str) -> None:
    _FORMATS.remember(store, mode, endpoint=endpoint, ai_model=ai_model)


def forget_response_format(store: DocumentStore, endpoint: str, ai_model: str) -> None:
    _FORMATS.forget(store, endpoint=endpoint, ai_model=ai_model)
