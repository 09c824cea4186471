import multiprocessing

import pytest
import sqlalchemy as sa

from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.context import ProcessingContext
from batch_pipeline.documents.vetting import PreparedDocument, document_id
from batch_pipeline.outcome import AnalysisOutcome, DocumentStatus
from batch_pipeline.store import CachedResult, DocumentStore
from batch_pipeline.store.schema import documents
from batch_pipeline_tests.conftest import _make_database

CONTEXT = ProcessingContext(model_key="content_compliance", ai_model="local").pinned(catalogue())


def doc(name: str, project: str = "p", problem: DocumentStatus | None = None) -> PreparedDocument:
    content_hash = f"hash-{name}"
    return PreparedDocument(
        document_id=document_id(project, content_hash),
        filename=f"{name}.md",
        content_hash=content_hash,
        size_bytes=10,
        text=None if problem else f"# {name}",
        encoding=None if problem else "utf-8",
        problem=problem,
        reason="bad" if problem else "",
    )


def test_schema_creation_is_idempotent(store):
    store.create_schema()
    store.create_schema()
    assert set(sa.inspect(store.engine).get_table_names()) >= {"documents", "analysis_results"}


def test_sqlite_store_uses_wal_and_a_busy_timeout(store):
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 30000


def test_registering_the_same_documents_twice_adds_no_document_rows(store):
    batch = [doc("a"), doc("b"), doc("c", problem=DocumentStatus.empty)]
    store.register_batch("run-1", "p", CONTEXT, batch)
    store.register_batch("run-2", "p", CONTEXT, batch)
    assert store.count_documents("p") == 3
    assert store.status_counts("run-1") == {"pending": 2, "empty": 1}
    assert store.status_counts("run-2") == {"pending": 2, "empty": 1}


def test_results_are_per_run_and_cache_points_at_the_producing_run(store):
    a = doc("a")
    store.register_batch("run-1", "p", CONTEXT, [a])
    store.record_outcome("run-1", a.document_id, AnalysisOutcome(status="ok", result='{"x": 1}', attempts=1))
    store.register_batch("run-2", "p", CONTEXT, [a])
    hits = store.find_cached("run-2", CONTEXT.cache_key(), [a.document_id])
    assert hits == {a.document_id: CachedResult(document_id=a.document_id, origin_run_id="run-1", result='{"x": 1}')}
    store.record_cached("run-2", hits.values())
    # a third run reusing run-2's copy still names run-1, the run that did the work
    store.register_batch("run-3", "p", CONTEXT, [a])
    assert store.find_cached("run-3", CONTEXT.cache_key(), [a.document_id])[a.document_id].origin_run_id == "run-1"
    rows = store.results("run-2")
    assert rows.loc[0, "status"] == "ok" and rows.loc[0, "cached_from_run_id"] == "run-1"
    other = ProcessingContext(model_key="content_compliance", ai_model="local", custom_instructions="x").pinned(
        catalogue()
    )
    assert store.find_cached("run-3", other.cache_key(), [a.document_id]) == {}


def test_failed_results_are_not_served_from_cache(store):
    a = doc("a")
    store.register_batch("run-1", "p", CONTEXT, [a])
    store.record_outcome("run-1", a.document_id, AnalysisOutcome(status="analysis_error", error="boom"))
    assert store.find_cached("run-2", CONTEXT.cache_key(), [a.document_id]) == {}


def _register_overlapping(url: str, worker: int) -> None:
    store = DocumentStore(url)
    store.create_schema()
    batch = [doc(f"shared-{i}") for i in range(200)] + [doc(f"own-{worker}-{i}") for i in range(50)]
    for attempt in range(3):
        store.register_batch(f"run-{worker}-{attempt}", "p", CONTEXT, batch)
        for d in batch[:20]:
            store.record_outcome(f"run-{worker}-{attempt}", d.document_id, AnalysisOutcome(status="ok", result="{}"))
    store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_url(request, pipeline_home) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{pipeline_home / 'concurrent.sqlite'}"
    return request.getfixturevalue("postgres_store_url")


@pytest.mark.slow  # processes
def test_concurrent_processes_register_overlapping_batches_without_duplicates_or_lock_errors(shared_url):
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_register_overlapping, args=(shared_url, w)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    store = DocumentStore(shared_url)
    with store.engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(documents).where(documents.c.project == "p")
        assert conn.scalar(query) == 200 + 4 * 50
    for w in range(4):
        assert store.status_counts(f"run-{w}-2") == {"ok": 20, "pending": 230}
    store.close()


LEGACY_RESULTS_TABLE = """
CREATE TABLE analysis_results (
    run_id VARCHAR(64) NOT NULL, document_id VARCHAR(64) NOT NULL, project VARCHAR(200) NOT NULL,
    filename TEXT NOT NULL, status VARCHAR(32) NOT NULL, error TEXT NOT NULL, model_key VARCHAR(100) NOT NULL,
    ai_model VARCHAR(200) NOT NULL, custom_instructions TEXT NOT NULL, analyser_version VARCHAR(40) NOT NULL,
    context_key VARCHAR(64) NOT NULL, result TEXT, raw_output TEXT, cached_from_run_id VARCHAR(64),
    input_tokens INTEGER, cached_input_tokens INTEGER, output_tokens INTEGER, latency_ms FLOAT, attempts INTEGER,
    request_id VARCHAR(200), answered_by_model VARCHAR(200), created_at TIMESTAMP NOT NULL, finished_at TIMESTAMP,
    PRIMARY KEY (run_id, document_id)
)"""


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'legacy.sqlite'}"
        return
    url, drop = _make_database(request.getfixturevalue("postgres_server"), "legacy")
    yield url
    drop()


def test_a_store_that_held_the_context_on_every_row_is_moved_to_one_row_per_run(empty_url):
    engine = sa.create_engine(empty_url)
    with engine.begin() as conn:
        conn.execute(sa.text(LEGACY_RESULTS_TABLE))
        for run, instructions in (("run-a", "A " * 1000), ("run-b", "B")):
            for n in range(3):
                conn.execute(
                    sa.text(
                        "INSERT INTO analysis_results (run_id, document_id, project, filename, status, error, "
                        "model_key, ai_model, custom_instructions, analyser_version, context_key, result, created_at) "
                        "VALUES (:run, :doc, 'p', :name, 'ok', '', 'content_compliance', 'local', :ci, '1', :key, "
                        "'{}', CURRENT_TIMESTAMP)"
                    ),
                    {"run": run, "doc": f"d{n}", "name": f"{n}.md", "ci": instructions, "key": f"k-{run}"},
                )
    engine.dispose()
    store = DocumentStore(empty_url)
    store.create_schema()
    store.create_schema()  # idempotent after the move
    rows = store.results("run-a")
    assert len(rows) == 3 and set(rows["custom_instructions"]) == {"A " * 1000}
    assert set(store.results("run-b")["custom_instructions"]) == {"B"}
    columns = {c["name"] for c in sa.inspect(store.engine).get_columns("analysis_results")}
    assert not columns & {"model_key", "ai_model", "custom_instructions", "analyser_version"}
    with store.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM batch_runs")) == 2
    assert set(store.find_cached("run-c", "k-run-a", ["d0", "d1"])) == {"d0", "d1"}
    store.close()


def test_the_context_is_stored_once_per_run(store):
    context = ProcessingContext(
        model_key="content_compliance", ai_model="local", custom_instructions="x" * 10_000
    ).pinned(catalogue())
    store.register_batch("run-1", "p", context, [doc(f"{n}.md") for n in range(50)])
    with store.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM batch_runs WHERE run_id = 'run-1'")) == 1
        stored = conn.scalar(sa.text("SELECT sum(length(custom_instructions)) FROM batch_runs"))
    assert stored == 10_000
    rows = store.results("run-1")
    assert len(rows) == 50 and set(rows["custom_instructions"]) == {"x" * 10_000}


def test_results_stored_under_a_status_since_renamed_take_the_new_name_once_and_are_repaired_as_before(
    any_store,
):
    """A store from before `pace_state_unavailable` (which said rate_limit_store_unavailable): the first
    create_schema of this version renames the stored status, so the next run repairs those answers;
    later ones do not scan the results again (every step opens the store)."""
    store = any_store
    docs = [doc("a"), doc("b")]
    store.register_batch("run-old", "p", CONTEXT, docs)

    def stored_as_before_the_upgrade(run_id: str) -> None:
        with store.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE analysis_results SET status = 'rate_limit_store_unavailable', raw_output = '{\"x\": 1}', "
                    "finished_at = created_at WHERE run_id = :run"
                ),
                {"run": run_id},
            )

    stored_as_before_the_upgrade("run-old")
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE applied_migrations"))  # as in a store of that version
    store.create_schema()
    assert store.status_counts("run-old") == {"pace_state_unavailable": 2}
    ids = [d.document_id for d in docs]
    assert set(store.unrepaired_answers("run-new", CONTEXT.cache_key(), ids)) == set(ids)

    store.register_batch("run-marker", "p", CONTEXT, [doc("c")])
    stored_as_before_the_upgrade("run-marker")  # a row only a second scan would rename
    store.create_schema()
    assert store.status_counts("run-marker") == {"rate_limit_store_unavailable": 1}
