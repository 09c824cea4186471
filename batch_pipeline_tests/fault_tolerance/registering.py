"""Documents as registration sees them, and a process registering them: light imports, for the
processes test_rerun_after_a_fix spawns."""

from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.context import ProcessingContext
from batch_pipeline.documents.vetting import PreparedDocument, document_id
from batch_pipeline.outcome import DocumentStatus
from batch_pipeline.store import DocumentStore

CONTEXT = ProcessingContext(model_key="content_compliance", ai_model="local").pinned(catalogue())


def prepared(name: str, text: str | None, problem: DocumentStatus | None = None, **fields) -> PreparedDocument:
    """A converted file as registration sees it: its markdown, or the problem that left it without."""
    return PreparedDocument(
        document_id=document_id("p", f"hash-{name}"),
        filename=fields.get("filename", f"{name}.pdf"),
        content_hash=f"hash-{name}",
        size_bytes=fields.get("size_bytes", 100),
        text=text,
        encoding=None,
        problem=problem,
        reason="needs OCR" if problem else "",
        converter=None if problem else fields.get("converter", "pypdfium2 5"),
    )


def fill_overlapping(url: str, worker: int) -> None:
    """Register, three times, 200 documents every worker shares and 50 of its own, all with content."""
    store = DocumentStore(url)
    batch = [prepared(f"shared-{i}", f"# shared {i}") for i in range(200)]
    batch += [prepared(f"own-{worker}-{i}", f"# own {i}") for i in range(50)]
    for attempt in range(3):
        store.register_batch(f"run-{worker}-{attempt}", "p", CONTEXT, batch)
    store.close()
