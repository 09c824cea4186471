"""Bringing a store written by an earlier version up to today's schema, inside create_schema's
transaction (under its advisory lock on PostgreSQL), once."""

import datetime as dt

import sqlalchemy as sa

from batch_pipeline.store.schema import CONTEXT_COLUMNS, analysis_results, applied_migrations, batch_runs, metadata

# Statuses stored under an earlier name (issue 26: one word per meaning), by the name they had.
RENAMED_STATUSES = {"rate_limit_store_unavailable": "pace_state_unavailable"}


def add_new_columns(conn: sa.Connection) -> None:
    """Columns added to a table after stores were written with it (all nullable): added in place."""
    inspector = sa.inspect(conn)
    for table in metadata.sorted_tables:
        held = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in held:
                kind = column.type.compile(dialect=conn.dialect)
                conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))


def move_context_to_batch_runs(conn: sa.Connection) -> None:
    """Stores written before batch_runs existed held the context on every result row: copy it
    into batch_runs once per run, then drop those columns (inside the schema transaction)."""
    held = {column["name"] for column in sa.inspect(conn).get_columns("analysis_results")}
    if not set(CONTEXT_COLUMNS) <= held:
        return
    r = analysis_results.c
    legacy = [sa.column(name) for name in CONTEXT_COLUMNS]
    per_run = (
        sa.select(
            r.run_id,
            sa.func.min(r.project),
            *[sa.func.min(c) for c in legacy],
            sa.func.min(r.context_key),
            sa.func.min(r.created_at),
        )  # fmt: skip
        .select_from(analysis_results)
        .group_by(r.run_id)
    )
    names = ["run_id", "project", *CONTEXT_COLUMNS, "context_key", "created_at"]
    conn.execute(batch_runs.insert().from_select(names, per_run))
    for name in CONTEXT_COLUMNS:
        conn.execute(sa.text(f"ALTER TABLE analysis_results DROP COLUMN {name}"))


def rename_statuses(conn: sa.Connection) -> None:
    """Results stored under a status's earlier name take its new one, so that a run stopped before
    the upgrade resumes them. Once per store: the UPDATE scans every result, and every step's
    create_schema would repeat it."""
    name = "rename_statuses_1"
    if conn.execute(sa.select(applied_migrations.c.name).where(applied_migrations.c.name == name)).first():
        return
    status = analysis_results.c.status
    for old, new in RENAMED_STATUSES.items():
        conn.execute(analysis_results.update().where(status == old).values(status=new))
    conn.execute(applied_migrations.insert().values(name=name, applied_at=dt.datetime.now(dt.UTC)))
