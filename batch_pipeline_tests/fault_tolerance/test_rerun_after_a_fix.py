"""Re-running after a fix just works: a document that failed (unread, unconverted, over a limit, its
analysis stopped) is read, converted and analysed on the run after the documented remedy, and no
stored state of one document can crash its partition or keep `batch-pipeline resume` from finishing."""

import asyncio
import errno
import json
import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from fpdf import FPDF

from batch_pipeline.batch.partitions import Partition
from batch_pipeline.batch.runner import NO_STORED_TEXT, analyse_documents
from batch_pipeline.cli.recovery import resume
from batch_pipeline.defs.tags import RESUMED_FROM_TAG
from batch_pipeline.documents import sources
from batch_pipeline.outcome import DocumentStatus
from batch_pipeline.store import DocumentStore
from batch_pipeline.store.schema import documents
from batch_pipeline_tests.batch.provider_batch_runs import finish, register
from batch_pipeline_tests.conftest import _make_database, batch_config, llm_run, rows_of, run_job, write_corpus
from batch_pipeline_tests.fault_tolerance.registering import CONTEXT, fill_overlapping, prepared
from testbed import conversion_fixtures as fixtures
from testbed.fake_openai_server import Behaviour, FakeOpenAIServer

PDF = "three_pages.pdf"


def pdf(pages: int, lines_per_page: int = 1) -> bytes:
    """A text PDF with an e-mail address on each line."""
    document = FPDF()
    for page in range(1, pages + 1):
        document.add_page()
        document.set_font("helvetica", size=10)
        for line in range(1, lines_per_page + 1):
            text = f"Page {page}, line {line}: write to anna_berg@example.com"
            document.cell(0, 8, text, new_x="LMARGIN", new_y="NEXT")
    return bytes(document.output())


def categories(result_json: str) -> set[str]:
    return {finding["category"] for finding in json.loads(result_json)["findings"]}


def stored_content(url: str, filename: str) -> dict:
    """The document row registered under filename: content, converter, size_bytes."""
    store = DocumentStore(url)
    try:
        d = documents.c
        with store.engine.connect() as conn:
            query = sa.select(d.content, d.converter, d.size_bytes).where(d.filename == filename)
            return conn.execute(query).one()._asdict()
    finally:
        store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, pipeline_home, monkeypatch) -> str:
    """The store the runs write to ($BATCH_PIPELINE_DATABASE_URL): SQLite, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{pipeline_home / 'store.sqlite'}"
    else:
        url, drop = _make_database(request.getfixturevalue("postgres_server"), "rerun")
        request.addfinalizer(drop)
    monkeypatch.setenv("BATCH_PIPELINE_DATABASE_URL", url)
    return url


@pytest.fixture
def pdf_and_markdown(tmp_path) -> Path:
    """The audit's batch: a 3-page PDF and 30 markdown files."""
    folder = write_corpus(tmp_path / "docs", 30)
    (folder / PDF).write_bytes(pdf(3))
    return folder


def run_over_max_pages(instance, folder: Path) -> dg.ExecuteInProcessResult:
    first = run_job(instance, batch_config(str(folder), max_pages=2))
    rows = rows_of(first.run_id)
    assert rows.loc[PDF, "status"] == "too_large" and "max_pages" in rows.loc[PDF, "error"]
    assert (rows.drop(index=PDF)["status"] == "ok").all()
    return first


def test_a_pdf_that_was_over_max_pages_is_converted_stored_and_analysed_when_rerun_without_the_limit(
    store_url, instance, pdf_and_markdown
):
    """The audit's reproduction, on SQLite and PostgreSQL: after the run that left the PDF too_large
    (max_pages: 2), the re-run without the limit stores the PDF's markdown in its document row,
    analyses it and succeeds; the 30 markdown files come from the cache."""
    first = run_over_max_pages(instance, pdf_and_markdown)
    assert stored_content(store_url, PDF)["content"] is None

    second = run_job(instance, batch_config(str(pdf_and_markdown)), raise_on_error=False)

    assert second.success
    rows = rows_of(second.run_id)
    assert len(rows) == 31 and set(rows["status"]) == {"ok"}
    assert categories(rows.loc[PDF, "result"]) == {"email"}
    assert (rows.drop(index=PDF)["cached_from_run_id"] == first.run_id).all()
    stored = stored_content(store_url, PDF)
    assert stored["content"].count("anna_berg@example.com") == 3
    assert stored["converter"].startswith("pypdfium2 ") and stored["size_bytes"] == len(pdf(3))


def test_a_partition_of_documents_stored_without_text_completes_and_the_next_run_analyses_them(
    pipeline_home, instance, pdf_and_markdown
):
    """A store left as the code before this fix left it (the PDF's row without content, though its
    re-run found markdown and queued it) no longer crashes the partition: the PDF alone ends
    analysis_error, saying to run the batch again, the run succeeds, and running it again does it."""
    run_over_max_pages(instance, pdf_and_markdown)
    with pytest.MonkeyPatch.context() as old_registration:
        old_registration.setattr(DocumentStore, "_fill_missing_content", staticmethod(lambda *_: None))
        second = run_job(instance, batch_config(str(pdf_and_markdown)), raise_on_error=False)

    assert second.success
    rows = rows_of(second.run_id)
    assert rows.loc[PDF, "status"] == "analysis_error" and rows.loc[PDF, "error"] == NO_STORED_TEXT
    assert (rows.drop(index=PDF)["status"] == "ok").all()

    third = run_job(instance, batch_config(str(pdf_and_markdown)))
    assert set(rows_of(third.run_id)["status"]) == {"ok"}


def test_resume_finishes_a_run_that_crashed_on_a_document_stored_without_text(store_url, instance, pdf_and_markdown):
    """`batch-pipeline resume` of a run that crashed with the PDF queued but its row without content
    (registered by the code before this fix) finishes the batch: the PDF is analysed, the markdown
    files come from the cache, and the crashed run's row is closed."""
    first = run_over_max_pages(instance, pdf_and_markdown)
    with pytest.MonkeyPatch.context() as before_the_fix:
        before_the_fix.setattr(DocumentStore, "_fill_missing_content", staticmethod(lambda *_: None))

        def crash(*_):
            raise dg.Failure("crashed reading the partition's texts", allow_retries=False)

        before_the_fix.setattr("batch_pipeline.batch.runner.texts_to_analyse", crash)
        crashed = run_job(instance, batch_config(str(pdf_and_markdown)), raise_on_error=False)
    assert not crashed.success
    assert rows_of(crashed.run_id).loc[PDF, "status"] in {"pending", "interrupted"}

    store = DocumentStore(store_url)
    try:
        resumed = resume(instance, store, crashed.run_id)
    finally:
        store.close()

    assert resumed.success
    assert instance.get_run_by_id(resumed.run_id).tags[RESUMED_FROM_TAG] == crashed.run_id
    rows = rows_of(resumed.run_id)
    assert len(rows) == 31 and set(rows["status"]) == {"ok"}
    assert (rows.drop(index=PDF)["cached_from_run_id"] == first.run_id).all()
    assert rows_of(crashed.run_id).loc[PDF, "status"] == "interrupted"


def document_rows(url: str) -> dict[str, dict]:
    store = DocumentStore(url)
    try:
        with store.engine.connect() as conn:
            return {row.document_id: row._asdict() for row in conn.execute(sa.select(documents))}
    finally:
        store.close()


def test_registration_fills_in_a_document_stored_without_content_and_overwrites_nothing(store_url):
    """On SQLite and PostgreSQL: a document row stored without content takes the content, converter
    and size of a later read that has them (its first filename and date stay); a row with content
    keeps it, whatever a later read brings, and a later failed read leaves every row as it is."""
    store = DocumentStore(store_url)
    store.create_schema()
    failed, kept = prepared("scan", None, DocumentStatus.conversion_failed), prepared("kept", "# first")
    store.register_batch("run-1", "p", CONTEXT, [failed, kept])
    before = document_rows(store_url)

    converted = prepared("scan", "# scan", converter="pypdfium2 5 + tesseract 5", filename="renamed.pdf", size_bytes=7)
    store.register_batch("run-2", "p", CONTEXT, [converted, prepared("kept", "# second", converter="other 1")])
    store.register_batch("run-3", "p", CONTEXT, [failed, prepared("kept", None, DocumentStatus.conversion_failed)])
    store.close()

    after = document_rows(store_url)
    scan = after[failed.document_id]
    assert (scan["content"], scan["converter"], scan["size_bytes"]) == ("# scan", "pypdfium2 5 + tesseract 5", 7)
    assert scan["filename"] == "scan.pdf" and scan["created_at"] == before[failed.document_id]["created_at"]
    assert after[kept.document_id] == before[kept.document_id]


def test_overlapping_registrations_fill_in_the_same_documents_without_deadlock(store_url):
    """On SQLite and PostgreSQL: processes registering overlapping batches at once, each filling in
    the same 200 documents stored without content, all succeed (no deadlock, no lock error), and
    every document ends with its content."""
    store = DocumentStore(store_url)
    store.create_schema()
    empty = [prepared(f"shared-{i}", None, DocumentStatus.conversion_failed) for i in range(200)]
    store.register_batch("failed", "p", CONTEXT, empty)
    store.close()

    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=fill_overlapping, args=(store_url, w)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)

    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    rows = document_rows(store_url)
    assert len(rows) == 200 + 4 * 50 and all(row["content"] for row in rows.values())


def test_a_document_without_stored_text_fails_alone_and_the_rest_are_analysed(store, offline):
    """Whatever one document's stored state (its row without content, or no row at all), the
    offline partition does not crash: that document ends analysis_error with the reason stored,
    and every other one is analysed."""
    docs = [prepared(f"doc-{i}", f"Write to person{i}@example.com") for i in range(5)]
    store.register_batch("run-1", "p", CONTEXT, docs)
    without_content, without_row = docs[0].document_id, docs[1].document_id
    with store.engine.begin() as conn:
        conn.execute(documents.update().where(documents.c.document_id == without_content).values(content=None))
        conn.execute(documents.delete().where(documents.c.document_id == without_row))
    partition = Partition(index=0, project="p", context=CONTEXT, document_ids=[d.document_id for d in docs])

    summary = asyncio.run(analyse_documents(store, "run-1", partition, offline))

    assert summary.status_counts == {"analysis_error": 2, "ok": 3}
    rows = store.results("run-1").set_index("document_id")
    assert list(rows.loc[[without_content, without_row], "error"]) == [NO_STORED_TEXT] * 2
    assert store.status_counts("run-1") == {"analysis_error": 2, "ok": 3}


def test_a_batch_api_partition_with_a_document_without_stored_text_sends_the_rest(store):
    """The same through the Batch API: the document without stored text ends analysis_error
    without being sent, the others are answered."""
    ids = register(store, "run-1", 3)
    with store.engine.begin() as conn:
        conn.execute(documents.update().where(documents.c.document_id == ids[0]).values(content=None))
    with FakeOpenAIServer() as server:
        counts, _ = finish(store, server, "run-1", ids)
        sent = [r.document for r in server.completions()]
    assert counts == {"analysis_error": 1, "ok": 2}
    assert len(sent) == 2 and store.results("run-1").set_index("document_id").loc[ids[0], "error"] == NO_STORED_TEXT


@dataclass
class Failure:
    """A document that fails in a first run, and the documented remedy for it."""

    status: str
    reason: str  # in the first run's error
    subject: str  # the failing document's filename
    write: Callable[[Path], None]  # puts the failing document in the folder
    options: dict = field(default_factory=dict)  # the first run's config
    breaks: Callable[[Path, pytest.MonkeyPatch], None] = lambda folder, patch: None  # the first run's environment
    remedy: Callable[[Path], None] = lambda folder: None  # what is done to the files
    fixed_subject: str | None = None  # its filename after the remedy, when that changes it
    needs_tesseract: bool = False


def _scan(folder: Path) -> None:
    (folder / "scan.png").write_bytes(fixtures.png_scan(["Signed form", "Card: 4111 1111 1111 1111"]))


def _without_tesseract(folder: Path, patch: pytest.MonkeyPatch) -> None:
    patch.setenv("PATH", str(folder.parent / "no_tesseract_here"))  # the conversion workers inherit it


def _permission_denied_for(name: str):
    def breaks(folder: Path, patch: pytest.MonkeyPatch) -> None:
        real_open = sources.open_regular

        def open_regular(path: Path, allowed=None):
            if path.name == name:  # the tests run as root, whom chmod does not stop
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(path, allowed)

        patch.setattr(sources, "open_regular", open_regular)

    return breaks


def _jsonl(bad_line: str):
    def write(folder: Path) -> None:
        good = {"filename": "memo.md", "markdown_content": "Write to tom_hale@example.com"}
        (folder.parent / "batch.jsonl").write_text(json.dumps(good) + "\n" + bad_line + "\n")

    return write


def _write(name: str, content: bytes | str):
    def write(folder: Path) -> None:
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())

    return write


LONG_TEXT = "\n".join(f"Line {i}: write to person{i}@example.com or call +1 415 555 {i:04d}." for i in range(600))
FIXED = "Write to anna_berg@example.com"

FAILURES = {
    "too_large: max_pages raised": Failure(
        "too_large", "max_pages", PDF, _write(PDF, pdf(3)), {"max_pages": 2}
    ),
    "too_large: max_file_bytes raised": Failure(
        "too_large", "max_file_bytes", "a.pdf", _write("a.pdf", pdf(1)), {"max_file_bytes": 200}
    ),
    "too_large: max_document_bytes raised for a text file": Failure(
        "too_large", "max_document_bytes", "long.md", _write("long.md", FIXED * 60), {"max_document_bytes": 1000}
    ),
    "too_large: max_document_bytes raised for a file's markdown": Failure(
        "too_large", "max_document_bytes", "a.pdf", _write("a.pdf", pdf(1, 25)), {"max_document_bytes": 1000}
    ),
    "conversion_failed: the file repaired": Failure(
        "conversion_failed", "not a readable PDF", "a.pdf", _write("a.pdf", pdf(1)[:300]),
        remedy=_write("a.pdf", pdf(1)),
    ),
    "conversion_failed: conversion_timeout_seconds raised": Failure(
        "conversion_failed", "conversion_timeout_seconds", "scan.png", _scan, {"conversion_timeout_seconds": 0.05},
        needs_tesseract=True,
    ),
    "conversion_failed: Tesseract put on PATH": Failure(
        "conversion_failed", "OCR needs Tesseract", "scan.png", _scan, breaks=_without_tesseract,
        needs_tesseract=True,
    ),
    "unreadable: permissions fixed": Failure(
        "unreadable", "Permission denied", "locked.md", _write("locked.md", FIXED),
        breaks=_permission_denied_for("locked.md"),
    ),
    "unreadable: binary content converted to text": Failure(
        "unreadable", "NUL bytes", "blob.md", _write("blob.md", b"\x00\x01\x02binary"), remedy=_write("blob.md", FIXED)
    ),
    "empty: the file filled": Failure("empty", "empty", "empty.md", _write("empty.md", ""), remedy=_write("empty.md", FIXED)),
    "invalid_record: the line fixed": Failure(
        "invalid_record", "not a JSON object", "batch.jsonl:2", _jsonl('{"filename": "notes.md"}'),
        remedy=_jsonl(json.dumps({"filename": "notes.md", "markdown_content": FIXED})), fixed_subject="notes.md",
    ),
    "analysis_timeout: analysis_timeout_seconds raised": Failure(
        "analysis_timeout", "analysis_timeout_seconds", "long.md", _write("long.md", LONG_TEXT),
        {"analysis_timeout_seconds": 0.05},
    ),
}  # fmt: skip


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_each_failure_ends_ok_when_rerun_after_its_readme_remedy(pipeline_home, instance, tmp_path, failure, request):
    """For each offline and ingest failure status of the "Failed documents" table (docs/guide/how-a-run-works.md): the first run
    ends the document so (for the documented reason) and completes; the re-run after the documented
    remedy (a limit raised or left at its default, the file fixed, Tesseract found) ends every document ok."""
    if failure.needs_tesseract:
        request.getfixturevalue("tesseract")
    folder = write_corpus(tmp_path / "docs", 2)
    failure.write(folder)
    source = str(tmp_path / "batch.jsonl") if failure.subject.startswith("batch.jsonl") else str(folder)
    with pytest.MonkeyPatch.context() as patch:
        failure.breaks(folder, patch)
        first = run_job(instance, batch_config(source, **failure.options))
    row = rows_of(first.run_id).loc[failure.subject]
    assert (row["status"], failure.reason in row["error"]) == (failure.status, True), row["error"]

    failure.remedy(folder)
    second = run_job(instance, batch_config(source), raise_on_error=False)

    assert second.success
    rows = rows_of(second.run_id)
    assert set(rows["status"]) == {"ok"}, rows[["status", "error"]]
    assert categories(rows.loc[failure.fixed_subject or failure.subject, "result"])


def test_provider_errors_end_ok_when_the_batch_is_rerun_later(pipeline_home, instance, key, tmp_path):
    """provider_error, remedied as the docs say ("re-run the batch later"): documents whose
    requests all failed with 5xx are analysed by the re-run once the provider answers."""
    corpus = write_corpus(tmp_path / "corpus", 3)
    options = {"max_attempts": 1, "response_format": "json_schema"}
    with FakeOpenAIServer(Behaviour(error_rate=1.0)) as server:
        first = llm_run(instance, server, corpus, llm_options=options)
        assert set(rows_of(first.run_id)["status"]) == {"provider_error"}

        server.behaviour.error_rate = 0.0
        second = llm_run(instance, server, corpus, llm_options=options)

    assert second.success and set(rows_of(second.run_id)["status"]) == {"ok"}
