"""What `compare` and `evaluate` read about past runs: each run's context, definition and how its
checks ended, and its documents' content hashes (documents are matched across runs and projects by
content)."""

from collections.abc import Sequence

import sqlalchemy as sa
from pydantic import BaseModel, TypeAdapter

from batch_pipeline.outcome import CheckOutcome
from batch_pipeline.store.document_store import DocumentStore, in_chunks
from batch_pipeline.store.schema import batch_runs, documents


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
