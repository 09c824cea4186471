"""What `compare` and `evaluate` read about past runs: each run's context and definition, and its
documents' content hashes (documents are matched across runs and projects by content)."""

from collections.abc import Sequence

import sqlalchemy as sa
from pydantic import BaseModel

from batch_pipeline.store.document_store import DocumentStore, in_chunks
from batch_pipeline.store.schema import batch_runs, documents


class RunRecord(BaseModel):
    run_id: str
    project: str
    model_key: str
    ai_model: str
    custom_instructions: str
    definition_digest: str | None


def run_record(store: DocumentStore, run_id: str) -> RunRecord | None:
    columns = [batch_runs.c[name] for name in RunRecord.model_fields]
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(*columns).where(batch_runs.c.run_id == run_id)).first()
    return None if row is None else RunRecord(**row._asdict())


def content_hashes(store: DocumentStore, document_ids: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    with store.engine.connect() as conn:
        for chunk in in_chunks(list(document_ids)):
            query = sa.select(documents.c.document_id, documents.c.content_hash).where(
                documents.c.document_id.in_(chunk)
            )
            found.update(dict(conn.execute(query).all()))
    return found
