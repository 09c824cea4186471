"""The SQLAlchemy engine: PostgreSQL with many-row statements batched; SQLite tuned so concurrent runs wait
instead of failing."""

import sqlite3
from pathlib import Path

import sqlalchemy as sa
import tenacity
from sqlalchemy.engine import make_url


def create_engine(url: str) -> sa.Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # values_plus_batch: an UPDATE of many rows (a chunk's outcomes) goes in pages, not row by row.
        batched = {"executemany_mode": "values_plus_batch"} if parsed.get_driver_name() == "psycopg2" else {}
        return sa.create_engine(url, pool_pre_ping=True, **batched)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 60})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Autocommit at the driver level so that "begin" below decides how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=60000")
        _use_write_ahead_log(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB: bulk registration touches many pages
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        # IMMEDIATE takes the write lock up front, so concurrent writers wait on busy_timeout
        # instead of failing with "database is locked" when a read lock cannot be upgraded.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _busy(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and ("locked" in str(error) or "busy" in str(error))


# Switching a new file to WAL, or opening one while another process recovers its log, can answer
# "database is locked" at once, without waiting on busy_timeout; a few short retries ride it out.
@tenacity.retry(
    retry=tenacity.retry_if_exception(_busy),
    wait=tenacity.wait_random(0.05, 0.5),
    stop=tenacity.stop_after_delay(60),
    reraise=True,
)
def _use_write_ahead_log(cursor) -> None:
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] in ("wal", "memory"):  # memory: sqlite:///:memory:
        return
    if (mode := cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]) != "wal":
        raise sqlite3.OperationalError(f"the store stays in journal mode {mode!r}: WAL is needed for concurrent runs")
