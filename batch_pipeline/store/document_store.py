"""DocumentStore: documents and per-run analysis results in one SQL database (SQLite or PostgreSQL).

Writes never collide between runs: documents are insert-if-absent (a document stored without
content takes the content a later read found), and every result row is keyed by (run_id,
document_id), so a run only ever updates its own rows.
"""

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from batch_pipeline.analysis.definition import AnalysisDefinition
from batch_pipeline.context import PinnedContext
from batch_pipeline.conversion.limits import Conversion
from batch_pipeline.documents.vetting import PreparedDocument
from batch_pipeline.outcome import AnalysisOutcome, DocumentStatus
from batch_pipeline.store.engine import create_engine
from batch_pipeline.store.migrations import add_new_columns, move_context_to_batch_runs, rename_statuses
from batch_pipeline.store.schema import (
    DOCUMENT_COLUMNS,
    INTEGER_COLUMNS,
    RESULT_COLUMNS,
    RUN_COLUMNS,
    analysis_definitions,
    analysis_results,
    batch_runs,
    documents,
    indexes,
    metadata,
)

if TYPE_CHECKING:
    import pandas as pd

WRITE_CHUNK = 5000

# Built once: one update per analysed document is the store's hottest statement.
_RECORD_OUTCOME = (
    analysis_results.update()
    .where(analysis_results.c.run_id == sa.bindparam("_run"), analysis_results.c.document_id == sa.bindparam("_doc"))
    .values({name: sa.bindparam(name) for name in [*AnalysisOutcome.model_fields, "finished_at"]})
)


_d = documents.c
# A document whose file could not be read or converted is stored without content; a later read
# that has it fills the row in. "IS NULL" again here: a concurrent run may have filled it first.
_FILLED_COLUMNS = ["content", "encoding", "converter", "size_bytes"]
_FILL_CONTENT = (
    documents.update()
    .where(_d.document_id == sa.bindparam("_doc"), _d.content.is_(None))
    .values({name: sa.bindparam(name) for name in _FILLED_COLUMNS})
)


class CachedResult(BaseModel):
    document_id: str
    origin_run_id: str
    result: str


def _now() -> datetime:
    return datetime.now(UTC)


def in_chunks(items: Sequence, size: int = WRITE_CHUNK) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _table_of(result_column: str) -> sa.Table:
    if result_column in RUN_COLUMNS:
        return batch_runs
    return documents if result_column in DOCUMENT_COLUMNS else analysis_results


# Statuses whose stored raw_output is an answer still to repair (its repair was not sent, or not answered).
REPAIRED_LATER = {
    DocumentStatus.interrupted,
    DocumentStatus.rate_limited,
    DocumentStatus.pace_state_unavailable,
    DocumentStatus.budget_exceeded,
    DocumentStatus.provider_error,
}


class DocumentStore:
    """Documents and analysis results. Plain Python: the Dagster resource only opens one."""

    def __init__(self, url: str):
        self.url = url
        self.shown_url = sa.engine.make_url(url).render_as_string(hide_password=True)  # for messages
        self.engine = create_engine(url)

    def close(self) -> None:
        self.engine.dispose()

    def create_schema(self) -> None:
        """Idempotent and safe when several runs start at once."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Concurrent CREATE ... IF NOT EXISTS can still race in the catalog; serialize them.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7341002)"))
            # Only what is missing: CREATE INDEX takes a lock on its table even when the index exists,
            # and deadlocks against a run already registering into it.
            inspector = sa.inspect(conn)
            for table in metadata.sorted_tables:
                if not inspector.has_table(table.name):
                    conn.execute(CreateTable(table, if_not_exists=True))
            for index in indexes:
                if index.name not in {i["name"] for i in inspector.get_indexes(index.table.name)}:
                    conn.execute(CreateIndex(index, if_not_exists=True))
            move_context_to_batch_runs(conn)
            add_new_columns(conn)
            rename_statuses(conn)

    def _insert(self, table: sa.Table):
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            return postgresql.insert(table)
        if dialect == "sqlite":
            return sqlite.insert(table)
        raise NotImplementedError(f"The document store supports SQLite and PostgreSQL, not {dialect}")

    def register_batch(
        self, run_id: str, project: str, context: PinnedContext, docs: Sequence[PreparedDocument]
    ) -> None:
        """Insert the batch's documents if absent and one result row per document for this run.

        Documents that cannot be analysed get their final status now; the rest start as pending.
        """
        now = _now()
        # One global insert order: concurrent overlapping batches on PostgreSQL cannot deadlock.
        docs = sorted(docs, key=lambda d: d.document_id)
        document_rows = [
            {
                "document_id": d.document_id,
                "project": project,
                "content_hash": d.content_hash,
                "filename": d.filename,
                "content": d.text,
                "encoding": d.encoding,
                "converter": d.converter,
                "size_bytes": d.size_bytes,
                "created_at": now,
            }
            for d in docs
        ]
        context_key = context.cache_key()
        definition_row = {
            "digest": context.definition.digest,
            "model_key": context.model_key,
            "definition": context.definition.model_dump_json(by_alias=True, exclude={"origin"}),
            "created_at": now,
        }
        run_row = {
            "run_id": run_id,
            "project": project,
            "model_key": context.model_key,
            "ai_model": context.ai_model,
            "custom_instructions": context.custom_instructions,
            "analyser_version": context.analyser_version,
            "context_key": context_key,
            "created_at": now,
            "definition_digest": context.definition.digest,
        }
        base = {"run_id": run_id, "project": project, "context_key": context_key, "created_at": now}
        result_rows = [
            {
                **base,
                "document_id": d.document_id,
                "filename": d.filename,
                "status": (d.problem or DocumentStatus.pending).value,
                "error": d.reason,
                "finished_at": now if d.problem else None,
            }
            for d in docs
        ]
        with self.engine.begin() as conn:
            self._insert_if_absent(conn, analysis_definitions, [definition_row])
            self._insert_if_absent(conn, batch_runs, [run_row])
            self._insert_if_absent(conn, documents, document_rows)
            self._fill_missing_content(conn, project, document_rows)
            self._insert_if_absent(conn, analysis_results, result_rows)

    @staticmethod
    def _fill_missing_content(conn: sa.Connection, project: str, document_rows: list[dict]) -> None:
        """Stored documents without content (an earlier read or conversion failed) take the content
        this read found. Only the rows that need it are updated, in document_id order like the
        inserts: overlapping registrations on PostgreSQL lock rows in one global order."""
        # The project's documents without content are few, and their partial index answers at once.
        query = sa.select(_d.document_id).where(_d.project == project, _d.content.is_(None))
        empty = set(conn.scalars(query))
        fills = [
            {"_doc": row["document_id"], **{name: row[name] for name in _FILLED_COLUMNS}}
            for row in document_rows
            if row["content"] is not None and row["document_id"] in empty
        ]
        if fills:
            conn.execute(_FILL_CONTENT, fills)

    def _insert_if_absent(self, conn: sa.Connection, table: sa.Table, rows: list[dict]) -> None:
        if not rows:
            return
        if conn.dialect.name == "postgresql":
            self._insert_if_absent_postgresql(conn, table, rows)
            return
        statement = self._insert(table).on_conflict_do_nothing()
        # SQLite fast path: SQLAlchemy's per-row parameter handling cost more than SQLite itself.
        compiled = statement.compile(dialect=conn.dialect, column_keys=list(rows[0]))
        keys = compiled.positiontup
        processors = {k: table.c[k].type.bind_processor(conn.dialect) for k in keys}
        processors = {k: p for k, p in processors.items() if p is not None}
        sql = str(compiled)
        for chunk in in_chunks(rows):
            values = [tuple(processors[k](r[k]) if k in processors else r[k] for k in keys) for r in chunk]
            conn.exec_driver_sql(sql, values)

    @staticmethod
    def _insert_if_absent_postgresql(conn: sa.Connection, table: sa.Table, rows: list[dict]) -> None:
        # SQLAlchemy sends an ON CONFLICT insert row by row (its multi-row "insertmanyvalues" leaves
        # those out): 3.4 s for a batch of 6,000 documents. psycopg2's execute_values sends a page of
        # rows per statement: 0.2 s.
        from psycopg2.extras import execute_values

        quote = conn.dialect.identifier_preparer.quote
        columns = list(rows[0])
        sql = f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))}) VALUES %s ON CONFLICT DO NOTHING"
        template = "(" + ", ".join(f"%({c})s" for c in columns) + ")"
        with conn.connection.dbapi_connection.cursor() as cursor:
            execute_values(cursor, sql, rows, template=template, page_size=1000)

    def pending_document_ids(self, run_id: str, document_ids: Sequence[str]) -> list[str]:
        return self._ids_in_status(run_id, document_ids, [DocumentStatus.pending])

    def unfinished_document_ids(self, run_id: str, document_ids: Sequence[str]) -> list[str]:
        """Those of the documents still pending, or interrupted, in the run."""
        return self._ids_in_status(run_id, document_ids, [DocumentStatus.pending, DocumentStatus.interrupted])

    def _ids_in_status(self, run_id: str, document_ids: Sequence[str], statuses: list[DocumentStatus]) -> list[str]:
        found: set[str] = set()
        r = analysis_results.c
        with self.engine.connect() as conn:
            for chunk in in_chunks(document_ids, 500):
                query = sa.select(r.document_id).where(
                    r.run_id == run_id, r.status.in_(statuses), r.document_id.in_(chunk)
                )
                found.update(conn.scalars(query))
        return [d for d in document_ids if d in found]

    def statuses(self, run_id: str, document_ids: Sequence[str]) -> Counter[str]:
        """How many of the documents are in each status in the run."""
        counts: Counter[str] = Counter()
        r = analysis_results.c
        with self.engine.connect() as conn:
            for chunk in in_chunks(document_ids, 500):
                counts.update(conn.scalars(sa.select(r.status).where(r.run_id == run_id, r.document_id.in_(chunk))))
        return counts

    def document_texts(self, document_ids: Sequence[str]) -> dict[str, str]:
        texts: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in in_chunks(document_ids, 500):
                query = sa.select(documents.c.document_id, documents.c.content).where(
                    documents.c.document_id.in_(chunk)
                )
                texts.update({row.document_id: row.content for row in conn.execute(query)})
        return texts

    def stored_conversions(self, document_ids: Sequence[str]) -> dict[str, Conversion]:
        """The markdown an earlier run converted these documents' files to (a re-run converts nothing again)."""
        found: dict[str, Conversion] = {}
        d = documents.c
        with self.engine.connect() as conn:
            for chunk in in_chunks(document_ids, 500):
                query = sa.select(d.document_id, d.content, d.converter).where(
                    d.document_id.in_(chunk), d.converter.is_not(None), d.content.is_not(None)
                )
                found.update({row.document_id: Conversion(row.content, row.converter) for row in conn.execute(query)})
        return found

    def find_cached(self, run_id: str, context_key: str, document_ids: Sequence[str]) -> dict[str, CachedResult]:
        """An ``ok`` result from another run under the same full context, per document that has one."""
        r = analysis_results.c
        found: dict[str, CachedResult] = {}
        with self.engine.connect() as conn:
            for chunk in in_chunks(document_ids, 500):
                query = (
                    sa.select(r.document_id, r.run_id, r.cached_from_run_id, r.result)
                    .where(
                        r.document_id.in_(chunk),
                        r.context_key == context_key,
                        r.status == DocumentStatus.ok,
                        r.run_id != run_id,
                    )
                    .order_by(r.finished_at)
                )
                for row in conn.execute(query):
                    found.setdefault(
                        row.document_id,
                        CachedResult(
                            document_id=row.document_id,
                            origin_run_id=row.cached_from_run_id or row.run_id,
                            result=row.result,
                        ),
                    )
        return found

    def unrepaired_answers(self, run_id: str, context_key: str, document_ids: Sequence[str]) -> dict[str, str]:
        """Per document, the model's answer that another run under the same full context paid for
        and could not repair (it was stopped, or the repair was not sent), when that is the
        document's latest finished result under this context: the next run repairs it."""
        r = analysis_results.c
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in in_chunks(document_ids, 500):
                query = (
                    sa.select(r.document_id, r.status, r.raw_output)
                    .where(
                        r.document_id.in_(chunk),
                        r.context_key == context_key,
                        r.run_id != run_id,
                        r.status != DocumentStatus.pending,
                        r.finished_at.is_not(None),
                    )
                    .order_by(r.finished_at.desc())
                )
                latest: dict[str, tuple[str, str | None]] = {}
                for row in conn.execute(query):
                    latest.setdefault(row.document_id, (row.status, row.raw_output))
                found.update(
                    (d, raw) for d, (status, raw) in latest.items() if status in REPAIRED_LATER and raw is not None
                )
        return found

    def record_cached(self, run_id: str, hits: Iterable[CachedResult]) -> None:
        r = analysis_results.c
        rows = [{"doc": h.document_id, "origin": h.origin_run_id, "res": h.result} for h in hits]
        if not rows:
            return
        statement = (
            analysis_results.update()
            .where(r.run_id == run_id, r.document_id == sa.bindparam("doc"), r.status == DocumentStatus.pending)
            .values(
                status=DocumentStatus.ok,
                error="",
                cached_from_run_id=sa.bindparam("origin"),
                result=sa.bindparam("res"),
                finished_at=_now(),
            )
        )
        with self.engine.begin() as conn:
            conn.execute(statement, rows)

    def record_outcome(self, run_id: str, document_id: str, outcome: AnalysisOutcome) -> None:
        self.record_outcomes(run_id, [(document_id, outcome)])

    def record_outcomes(self, run_id: str, outcomes: Sequence[tuple[str, AnalysisOutcome]]) -> None:
        """Several documents' outcomes in one transaction (one commit: on PostgreSQL, one WAL flush)."""
        finished_at = _now()
        rows = [{**o.model_dump(), "_run": run_id, "_doc": d, "finished_at": finished_at} for d, o in outcomes]
        with self.engine.begin() as conn:
            conn.execute(_RECORD_OUTCOME, rows)

    def mark_interrupted(self, run_id: str, note: str) -> int:
        """Close a dead run's pending rows so they no longer look in progress."""
        r = analysis_results.c
        statement = (
            analysis_results.update()
            .where(r.run_id == run_id, r.status == DocumentStatus.pending)
            .values(status=DocumentStatus.interrupted, error=note, finished_at=_now())
        )
        with self.engine.begin() as conn:
            return conn.execute(statement).rowcount

    def results(self, run_id: str) -> "pd.DataFrame":
        """One row per document of the run, in filename order."""
        import pandas as pd  # only reports read results: a run's process loads pandas when it needs it

        # The context is stored once per run and printed on every row.
        columns = [_table_of(name).c[name] for name in RESULT_COLUMNS]
        query = (
            sa.select(*columns)
            .join_from(analysis_results, batch_runs, analysis_results.c.run_id == batch_runs.c.run_id)
            .join(documents, documents.c.document_id == analysis_results.c.document_id, isouter=True)
            .where(analysis_results.c.run_id == run_id)
            .order_by(analysis_results.c.filename)
        )
        with self.engine.connect() as conn:
            # Plain tuples: pandas probes each Row for namedtuple fields, which SQLAlchemy answers slowly.
            frame = pd.DataFrame([tuple(row) for row in conn.execute(query)], columns=RESULT_COLUMNS)
        return frame.astype({name: "Int64" for name in INTEGER_COLUMNS})

    def analysis_definition(self, digest: str) -> AnalysisDefinition | None:
        """The definition a run was launched with, by its digest (batch_runs.definition_digest)."""
        query = sa.select(analysis_definitions.c.definition).where(analysis_definitions.c.digest == digest)
        with self.engine.connect() as conn:
            stored = conn.scalar(query)
        return None if stored is None else AnalysisDefinition.model_validate_json(stored)

    def status_counts(self, run_id: str) -> dict[str, int]:
        r = analysis_results.c
        query = sa.select(r.status, sa.func.count()).where(r.run_id == run_id).group_by(r.status).order_by(r.status)
        with self.engine.connect() as conn:
            return {status: count for status, count in conn.execute(query)}

    def count_documents(self, project: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(documents)
        if project is not None:
            query = query.where(documents.c.project == project)
        with self.engine.connect() as conn:
            return conn.scalar(query) or 0
