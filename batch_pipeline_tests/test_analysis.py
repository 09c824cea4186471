import asyncio
import dataclasses

from batch_pipeline.analysis_models import REGISTRY
from batch_pipeline.analysis import OfflineAnalyser, Partition, analyze_documents
from batch_pipeline.context import ModelKey, ProcessingContext
from batch_pipeline.sources import PreparedDocument, document_id
from batch_pipeline.store import AnalysisOutcome

CONTEXT = ProcessingContext(model_key=ModelKey.document_metadata, ai_model="local", custom_instructions="x")


def register(store, run_id: str, texts: list[str]) -> list[str]:
    docs = [
        PreparedDocument(
            document_id=document_id("p", f"h{i}"), filename=f"{i}.md", content_hash=f"h{i}", size_bytes=len(t),
            text=t, encoding="utf-8", problem=None, reason="",
        )  # fmt: skip
        for i, t in enumerate(texts)
    ]
    store.register_batch(run_id, "p", CONTEXT, docs)
    return [d.document_id for d in docs]


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
    summary = asyncio.run(analyze_documents(store, "r1", Partition(index=0, project="p", context=CONTEXT, document_ids=ids), analyser))
    assert summary.status_counts == {"ok": 2, "analysis_error": 1}
    assert {c for _, c in analyser.seen} == {CONTEXT}
    rows = store.results("r1").set_index("filename")
    assert rows.loc["1.md", "error"] == "boom found"


def test_a_retried_partition_skips_documents_already_finished_in_this_run(store):
    ids = register(store, "r1", ["# a", "# b", "# c"])
    store.record_outcome("r1", ids[0], AnalysisOutcome(status="ok", result="{}"))
    analyser = RecordingAnalyser()
    summary = asyncio.run(analyze_documents(store, "r1", Partition(index=0, project="p", context=CONTEXT, document_ids=ids), analyser))
    assert [t for t, _ in analyser.seen] == ["# b", "# c"]
    assert summary.skipped_already_done == 1


def test_offline_analyser_turns_an_exception_into_an_analysis_error(monkeypatch):
    def explode(_text):
        raise ValueError("parser bug")

    context = ProcessingContext(model_key=ModelKey.content_compliance, ai_model="local")
    broken = dataclasses.replace(REGISTRY["content_compliance"], analyse_offline=explode)
    monkeypatch.setitem(REGISTRY, "content_compliance", broken)
    outcome = asyncio.run(OfflineAnalyser().analyse("text", context))
    assert outcome.status == "analysis_error"
    assert outcome.error == "ValueError: parser bug"
