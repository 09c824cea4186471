"""Bringing a store written by an earlier version up to today's schema, inside create_schema's
transaction (under its advisory lock on PostgreSQL), once."""

import sqlalchemy as sa

from batch_pipeline.store.schema import CONTEXT_COLUMNS, analysis_results, batch_runs


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
