"""What `compare` and `evaluate` read about past runs: each run's context, definition and how its
checks ended, and its documents' content hashes (documents are matched across runs and projects by
content)."""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from pydantic import BaseModel, TypeAdapter

from batch_pipeline.outcome import CheckOutcome
from batch_pipeline.store.document_store import DocumentStore, in_chunks
from batch_pipeline.store.schema import analysis_results, batch_runs, documents


class RunRecord(BaseModel):
    run_id: str
    project: str
    model_key: str
    ai_model: str
    custom_instructions: str
    definition_digest: str | None
    checks: list[CheckOutcome] | None  # None: the run has not finished (or ran before checks existed)

    @property
    def failed_checks(self) -> list[CheckOutcome]:
        return [check for check in self.checks or [] if not check.passed]


CHECK_OUTCOMES = TypeAdapter(list[CheckOutcome])


def run_record(store: DocumentStore, run_id: str) -> RunRecord | None:
    columns = [batch_runs.c[name] for name in RunRecord.model_fields]
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(*columns).where(batch_runs.c.run_id == run_id)).first()
    if row is None:
        return None
    stored = row._asdict()
    checks = stored.pop("checks")
    return RunRecord(**stored, checks=None if checks is None else CHECK_OUTCOMES.validate_json(checks))


def record_checks(store: DocumentStore, run_id: str, outcomes: list[CheckOutcome]) -> None:
    """How the run's checks ended; a resumed run's later outcome replaces its earlier one."""
    with store.engine.begin() as conn:
        conn.execute(
            batch_runs.update()
            .where(batch_runs.c.run_id == run_id)
            .values(checks=CHECK_OUTCOMES.dump_json(outcomes).decode())
        )


def content_hashes(store: DocumentStore, document_ids: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    with store.engine.connect() as conn:
        for chunk in in_chunks(list(document_ids)):
            query = sa.select(documents.c.document_id, documents.c.content_hash).where(
                documents.c.document_id.in_(chunk)
            )
            found.update(dict(conn.execute(query).all()))
    return found


class RunSummary(BaseModel):
    """One line of `batch-pipeline runs`."""

    run_id: str
    project: str
    model_key: str
    ai_model: str
    custom_instructions: str
    created_at: datetime
    status_counts: dict[str, int]
    failed_checks: list[str]


def recent_runs(
    store: DocumentStore,
    project: str | None = None,
    model_key: str | None = None,
    ai_model: str | None = None,
    limit: int = 20,
) -> list[RunSummary]:
    """The store's latest runs, newest first, with their documents per status."""
    r = batch_runs.c
    query = sa.select(r.run_id, r.project, r.model_key, r.ai_model, r.custom_instructions, r.created_at, r.checks)
    for column, wanted in ((r.project, project), (r.model_key, model_key), (r.ai_model, ai_model)):
        if wanted is not None:
            query = query.where(column == wanted)
    query = query.order_by(r.created_at.desc(), r.run_id).limit(limit)
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
        counts: dict[str, dict[str, int]] = {row.run_id: {} for row in rows}
        a = analysis_results.c
        per_status = (
            sa.select(a.run_id, a.status, sa.func.count())
            .where(a.run_id.in_(list(counts)))
            .group_by(a.run_id, a.status)
            .order_by(a.run_id, a.status)
        )
        for run_id, status, count in conn.execute(per_status):
            counts[run_id][status] = count
    return [
        RunSummary(
            **{name: getattr(row, name) for name in ("run_id", "project", "model_key", "ai_model", "created_at")},
            custom_instructions=row.custom_instructions,
            status_counts=counts[row.run_id],
            failed_checks=[c.name for c in CHECK_OUTCOMES.validate_json(row.checks) if not c.passed]
            if row.checks
            else [],
        )
        for row in rows
    ]
