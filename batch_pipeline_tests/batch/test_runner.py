import asyncio
import contextlib
import importlib.metadata

import sqlalchemy as sa

from batch_pipeline.analysis.analysis import AttachedAnalyser, PackagedAnalysis, distribution_version
from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.batch.offline import OfflineAnalyser, analyse_in_worker, analysis_reference
from batch_pipeline.batch.partitions import Partition
from batch_pipeline.batch.runner import analyse_documents
from batch_pipeline.context import ProcessingContext
from batch_pipeline.outcome import AnalysisOutcome
from batch_pipeline.store.schema import batch_runs
from batch_pipeline_tests.analysis.sample_definition import VALID
from batch_pipeline_tests.conftest import register_texts

CONTEXT = ProcessingContext(model_key="document_metadata", ai_model="local", custom_instructions="x").pinned(
    catalogue()
)


def register(store, run_id: str, texts: list[str]) -> list[str]:
    return register_texts(store, run_id, CONTEXT, texts)


class RecordingAnalyser:
    """Fails on documents containing 'boom', records what it was asked to analyse."""

    max_concurrency = 4

    def __init__(self):
        self.seen: list[tuple[str, ProcessingContext]] = []

    async def analyse(self, text: str, context: ProcessingContext) -> AnalysisOutcome:
        self.seen.append((text, context))
        await asyncio.sleep(0.01)
        if "boom" in text:
            return AnalysisOutcome(status="analysis_error", error="boom found")
        return AnalysisOutcome(status="ok", result='{"ok": true}')


def test_a_failing_document_fails_alone_and_the_context_travels_with_the_partition(store):
    ids = register(store, "r1", ["# a", "boom", "# c"])
    analyser = RecordingAnalyser()
    summary = asyncio.run(
        analyse_documents(store, "r1", Partition(index=0, project="p", context=CONTEXT, document_ids=ids), analyser)
    )
    assert summary.status_counts == {"ok": 2, "analysis_error": 1}
    assert all(c == CONTEXT for _, c in analyser.seen) and len(analyser.seen) == 3
    rows = store.results("r1").set_index("filename")
    assert rows.loc["1.md", "error"] == "boom found"


def test_a_retried_partition_skips_documents_already_finished_in_this_run(store):
    ids = register(store, "r1", ["# a", "# b", "# c"])
    store.record_outcome("r1", ids[0], AnalysisOutcome(status="ok", result="{}"))
    analyser = RecordingAnalyser()
    summary = asyncio.run(
        analyse_documents(store, "r1", Partition(index=0, project="p", context=CONTEXT, document_ids=ids), analyser)
    )
    assert [t for t, _ in analyser.seen] == ["# b", "# c"]
    assert summary.skipped_already_done == 1


def test_offline_analyser_turns_an_exception_into_an_analysis_error(tmp_path, monkeypatch):
    def explode(_text):
        raise ValueError("parser bug")

    import importlib.metadata as metadata

    from batch_pipeline.analysis import registry

    definition = tmp_path / "exploding.yaml"
    definition.write_text(VALID)
    entry_point = metadata.EntryPoint("exploding", "x:y", registry.ENTRY_POINT_GROUP)
    packaged = PackagedAnalysis(definition, AttachedAnalyser(explode, version="1"))
    monkeypatch.setattr(metadata.EntryPoint, "load", lambda self: packaged)
    monkeypatch.setattr(metadata, "entry_points", lambda group: [entry_point])
    loaded = registry.load_catalogue([])
    monkeypatch.setattr("batch_pipeline.batch.offline.catalogue", lambda: loaded)
    context = ProcessingContext(model_key="exploding", ai_model="local").pinned(loaded)
    status, error, _ = analyse_in_worker(analysis_reference(context), "text")  # what each worker runs
    assert (status, error) == ("analysis_error", "ValueError: parser bug")


def test_an_attached_analyser_whose_answer_leaves_the_schema_fails_that_document(tmp_path, monkeypatch):
    import importlib.metadata as metadata

    from batch_pipeline.analysis import registry

    definition = tmp_path / "sloppy.yaml"
    definition.write_text(VALID)
    packaged = PackagedAnalysis(definition, AttachedAnalyser(lambda text: {"category": "other"}, version="1"))
    monkeypatch.setattr(metadata.EntryPoint, "load", lambda self: packaged)
    monkeypatch.setattr(metadata, "entry_points", lambda group: [metadata.EntryPoint("sloppy", "x:y", "g")])
    loaded = registry.load_catalogue([])
    monkeypatch.setattr("batch_pipeline.batch.offline.catalogue", lambda: loaded)
    context = ProcessingContext(model_key="sloppy", ai_model="local").pinned(loaded)
    status, error, _ = analyse_in_worker(analysis_reference(context), "text")
    assert status == "analysis_error" and "ValidationError" in error and "category" in error


def test_a_worker_refuses_a_definition_other_than_the_run_s():
    """A worker whose installation defines the analysis otherwise than the run was launched with
    fails the document rather than mix two definitions in one run."""
    pinned = ProcessingContext(model_key="content_compliance", ai_model="local").pinned(catalogue())
    status, error, _ = analyse_in_worker(f"content_compliance@{'0' * 64}", "text")
    assert status == "analysis_error" and "not the one the run was launched with" in error
    assert analyse_in_worker(analysis_reference(pinned), "mail a@example.com")[0] == "ok"


def stored_versions(store, run_id: str) -> set[str]:
    query = sa.select(batch_runs.c.analyser_version).where(batch_runs.c.run_id == run_id)
    with store.engine.connect() as conn:
        return set(conn.scalars(query))


def test_an_upgraded_data_library_re_analyses_instead_of_serving_old_results(store, monkeypatch, offline):
    """document_metadata's offline results depend on py3langid's model: after an upgrade of it,
    a new run must not be served the results the old version produced."""
    partition = Partition(index=0, project="p", context=CONTEXT, document_ids=register(store, "r1", ["# a", "# b"]))
    asyncio.run(analyse_documents(store, "r1", partition, offline))
    register(store, "r2", ["# a", "# b"])
    assert asyncio.run(analyse_documents(store, "r2", partition, offline)).cached == 2
    old_digest = CONTEXT.analyser_version.split("+")[1]

    installed = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "99.0" if name == "py3langid" else installed(name))
    distribution_version.cache_clear()
    try:
        upgraded = CONTEXT.unpinned().pinned(catalogue())
        ids = register(store, "r3", ["# a", "# b"])
        summary = asyncio.run(
            analyse_documents(store, "r3", partition.model_copy(update={"context": upgraded}), offline)
        )
        assert summary.cached == 0 and summary.status_counts == {"ok": 2}
        assert stored_versions(store, "r3") == {upgraded.analyser_version}
        assert stored_versions(store, "r1") == {CONTEXT.model.version + "+" + old_digest}
        assert CONTEXT.model.version == CONTEXT.definition.digest[:16]
        assert upgraded.analyser_version != CONTEXT.model.version + "+" + old_digest
        assert set(store.results("r3")["document_id"]) == set(ids)
    finally:
        monkeypatch.undo()
        distribution_version.cache_clear()


def test_a_document_over_the_time_limit_ends_alone_and_the_worker_is_replaced(store, offline_workers):
    slow = " ".join(f"user{i}@example.com" for i in range(72_000))  # a few seconds of analysis
    ids = register(store, "r1", ["# a", slow, "# c", "# d"])
    context = ProcessingContext(model_key="content_compliance", ai_model="local").pinned(catalogue())
    partition = Partition(index=0, project="p", context=context, document_ids=ids)
    analyser = OfflineAnalyser(offline_workers, timeout_seconds=0.5)
    summary = asyncio.run(analyse_documents(store, "r1", partition, analyser))
    assert summary.status_counts == {"ok": 3, "analysis_timeout": 1}
    rows = store.results("r1").set_index("filename")
    assert rows.loc["1.md", "status"] == "analysis_timeout" and "0.5 s" in rows.loc["1.md", "error"]


def test_a_chunk_that_overruns_the_limit_is_split_and_only_the_slow_document_times_out(store, offline_workers):
    context = ProcessingContext(model_key="content_compliance", ai_model="local").pinned(catalogue())
    warm = register(store, "warm", ["# warm"])
    asyncio.run(analyse_documents(store, "warm", Partition(index=0, project="p", context=context, document_ids=warm),
                                  OfflineAnalyser(offline_workers, timeout_seconds=60)))  # fmt: skip
    # About half a second of card checks, yet small enough to share a chunk with the others.
    slow = " ".join(f"4111 1111 1111 {i % 10_000:04d}" for i in range(2_800))
    ids = register(store, "r1", ["# a", slow, "# c"])
    partition = Partition(index=0, project="p", context=context, document_ids=ids)
    summary = asyncio.run(analyse_documents(store, "r1", partition, OfflineAnalyser(offline_workers, 0.1)))
    assert summary.status_counts == {"ok": 2, "analysis_timeout": 1}
    assert store.results("r1").set_index("filename").loc["1.md", "status"] == "analysis_timeout"


class ChunkAnalyser:
    """Answers documents in groups, as an offline worker's chunk comes back: all at once. With hold,
    the first group waits for it and later groups are never answered."""

    def __init__(self, group: int, hold: asyncio.Event | None = None):
        self.max_concurrency = 100
        self.group, self.hold = group, hold
        self._waiting: list[asyncio.Future] = []
        self._answered_groups = 0

    async def analyse(self, text: str, context: ProcessingContext) -> AnalysisOutcome:
        answer = asyncio.get_running_loop().create_future()
        self._waiting.append(answer)
        if len(self._waiting) == self.group:
            waiting, self._waiting = self._waiting, []
            self._answered_groups += 1
            if self.hold:
                await (self.hold.wait() if self._answered_groups == 1 else asyncio.Event().wait())
            for future in waiting:
                future.set_result(AnalysisOutcome(status="ok", result="{}"))
        return await answer


class CountingStore:
    def __init__(self, store, fail: bool = False):
        self.store, self.fail, self.transactions = store, fail, []

    def record_outcomes(self, run_id, outcomes):
        if self.fail:
            raise sa.exc.OperationalError("UPDATE", {}, Exception("the database went away"))
        self.transactions.append(len(outcomes))
        self.store.record_outcomes(run_id, outcomes)

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_outcomes_known_together_are_stored_in_one_transaction(store):
    ids = register(store, "r1", [f"# {i}" for i in range(64)])
    counting = CountingStore(store)
    partition = Partition(index=0, project="p", context=CONTEXT, document_ids=ids)
    summary = asyncio.run(analyse_documents(counting, "r1", partition, ChunkAnalyser(group=32)))
    assert summary.status_counts == {"ok": 64}
    assert sum(counting.transactions) == 64 and len(counting.transactions) == 2  # not 64 commits
    assert store.status_counts("r1") == {"ok": 64}


def test_a_failed_write_fails_the_partition_instead_of_losing_outcomes_quietly(store):
    ids = register(store, "r1", ["# a", "# b"])
    partition = Partition(index=0, project="p", context=CONTEXT, document_ids=ids)
    try:
        asyncio.run(analyse_documents(CountingStore(store, fail=True), "r1", partition, ChunkAnalyser(group=2)))
    except sa.exc.OperationalError as e:
        assert "went away" in str(e)
    else:
        raise AssertionError("the partition succeeded although its outcomes were not stored")
    assert store.status_counts("r1") == {"pending": 2}


def test_a_stopped_partition_keeps_the_outcomes_known_before_the_stop(store):
    ids = register(store, "r1", [f"# {i}" for i in range(6)])
    partition = Partition(index=0, project="p", context=CONTEXT, document_ids=ids)

    async def stop_after_the_first_answers() -> None:
        hold = asyncio.Event()
        task = asyncio.ensure_future(analyse_documents(store, "r1", partition, ChunkAnalyser(group=3, hold=hold)))
        await asyncio.sleep(0.05)
        hold.set()  # the first three are answered; the other three never are
        await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(stop_after_the_first_answers())
    assert store.status_counts("r1") == {"ok": 3, "pending": 3}
