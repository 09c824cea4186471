"""A run's spend against its max_cost_usd, kept in the store so that every step and process of the
run draws on one budget. Each change is one conditional UPDATE: two requests can never both take
the last of it."""

from collections.abc import Sequence

import sqlalchemy as sa

from batch_pipeline.store.document_store import DocumentStore
from batch_pipeline.store.schema import run_budgets

# Float sums of many small costs: a reservation that fits to the millionth of a cent fits.
TOLERANCE_USD = 1e-8


def open_run_budget(store: DocumentStore, run_id: str, max_cost_usd: float) -> None:
    """Create the run's budget once (every partition step calls this; the first creates it)."""
    row = {"run_id": run_id, "max_cost_usd": max_cost_usd, "spent_usd": 0.0, "reserved_usd": 0.0}
    try:
        with store.engine.begin() as conn:
            if conn.scalar(sa.select(sa.func.count()).where(run_budgets.c.run_id == run_id)) == 0:
                conn.execute(run_budgets.insert().values(**row))
    except sa.exc.IntegrityError:
        pass  # a concurrent step created it first


def _within(statement, usd: float, cap: float | None):
    """Where spent + reserved + usd stays within the budget (and cap), and spent has not reached it."""
    b = run_budgets.c
    for limit in (b.max_cost_usd, cap) if cap is not None else (b.max_cost_usd,):
        statement = statement.where(b.spent_usd < limit, b.spent_usd + b.reserved_usd + usd <= limit + TOLERANCE_USD)
    return statement


def reserve(store: DocumentStore, run_id: str, usd: float, cap: float | None = None) -> bool:
    """Take usd out of the run's budget for a request about to be sent; False when it does not fit, and
    always once the spend has reached the budget (an answer can cost more than its reservation).
    cap: the reserving run's own max_cost_usd, which it never passes either (its budget may be an
    earlier run's)."""
    b = run_budgets.c
    statement = _within(
        run_budgets.update().where(b.run_id == run_id).values(reserved_usd=b.reserved_usd + usd), usd, cap
    )
    with store.engine.begin() as conn:
        return conn.execute(statement).rowcount == 1


def fits(store: DocumentStore, run_id: str, usd: float, cap: float | None = None) -> bool:
    """Whether reserve would take usd now (reserving nothing)."""
    query = _within(sa.select(sa.func.count()).where(run_budgets.c.run_id == run_id), usd, cap)
    with store.engine.connect() as conn:
        return conn.scalar(query) == 1


def reserve_each(conn: sa.Connection, run_id: str, cap: float, amounts: Sequence[tuple[str, float]]) -> list[str]:
    """Within the caller's transaction: reserve, in order, each of the amounts that still fits (the
    budget's row locked meanwhile); the keys of those that did."""
    b = run_budgets.c
    row = conn.execute(sa.select(run_budgets).where(b.run_id == run_id).with_for_update()).one()
    limit = min(row.max_cost_usd, cap)
    if row.spent_usd >= limit:
        return []
    room = limit - row.spent_usd - row.reserved_usd + TOLERANCE_USD
    taken, total = [], 0.0
    for key, usd in amounts:
        if total + usd <= room:
            taken.append(key)
            total += usd
    conn.execute(run_budgets.update().where(b.run_id == run_id).values(reserved_usd=b.reserved_usd + total))
    return taken


def settle(store: DocumentStore, run_id: str, reserved_usd: float, spent_usd: float) -> None:
    """A request's reservation becomes what it really cost."""
    with store.engine.begin() as conn:
        settle_in(conn, run_id, reserved_usd, spent_usd)


def settle_in(conn: sa.Connection, run_id: str, reserved_usd: float, spent_usd: float) -> None:
    """settle, within the caller's transaction."""
    b = run_budgets.c
    statement = (
        run_budgets.update()
        .where(b.run_id == run_id)
        .values(reserved_usd=b.reserved_usd - reserved_usd, spent_usd=b.spent_usd + spent_usd)
    )
    conn.execute(statement)


def spend_of(store: DocumentStore, run_id: str) -> tuple[float, float, float] | None:
    """(max_cost_usd, spent_usd, reserved_usd), or None when the run has no budget."""
    query = sa.select(run_budgets.c.max_cost_usd, run_budgets.c.spent_usd, run_budgets.c.reserved_usd)
    with store.engine.connect() as conn:
        row = conn.execute(query.where(run_budgets.c.run_id == run_id)).first()
    return None if row is None else (row.max_cost_usd, row.spent_usd, row.reserved_usd)
