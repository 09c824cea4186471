import base64
import hashlib
import json

import pytest

from batch_pipeline.documents.sources import SourceError, read_source
from batch_pipeline.documents.vetting import decode, document_id, prepare
from batch_pipeline.outcome import DocumentStatus


@pytest.mark.parametrize(
    "content, text, problem",
    [
        ("# Café\n".encode(), "# Café\n", None),
        ("\ufeff# BOM\n".encode("utf-8"), "# BOM\n", None),
        ("# Café crème à la façon de l'été\n".encode("latin-1"), "# Café crème à la façon de l'été\n", None),
        (b"", None, DocumentStatus.empty),
        (b"  \n\t\n", None, DocumentStatus.empty),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", None, DocumentStatus.unreadable),
    ],
)
def test_decode(content, text, problem):
    decoded, _encoding, found_problem, reason = decode(content)
    assert decoded == text
    assert found_problem == problem
    assert bool(reason) == (problem is not None)


def test_a_file_mixing_utf8_and_cp1252_decodes_each_part_as_what_it_is():
    mixed = "Café crème — in UTF-8. ".encode() + "Et là: réunion à Zürich, 5 €.".encode("cp1252")
    text, encoding, problem, _ = decode(mixed)
    assert text == "Café crème — in UTF-8. Et là: réunion à Zürich, 5 €."
    assert encoding == "utf-8+cp1252" and problem is None


def test_same_project_and_content_give_the_same_id_across_filenames():
    assert document_id("p", "abc") == document_id("p", "abc")
    assert document_id("p", "abc") != document_id("q", "abc")


def test_folder_source_reads_text_and_files_to_convert_recursively_and_reports_others(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.md").write_text("# A")
    (tmp_path / "sub" / "b.txt").write_text("B")
    (tmp_path / "scan.PNG").write_bytes(b"\x89PNG")
    (tmp_path / "movie.mp4").write_bytes(b"\x00\x00")
    (tmp_path / ".hidden.md").write_text("hidden")
    contents = read_source(str(tmp_path), None, 1000)
    assert [(d.filename, d.convert_as) for d in contents.documents] == [
        (".hidden.md", None),
        ("a.md", None),
        ("scan.PNG", ".png"),
        ("sub/b.txt", None),
    ]
    assert contents.ignored == ["movie.mp4"]


def test_files_to_convert_have_their_own_size_limit(tmp_path):
    (tmp_path / "big.md").write_text("x" * 2000)
    (tmp_path / "big.pdf").write_bytes(b"%PDF" + b"x" * 2000)
    (tmp_path / "huge.pdf").write_bytes(b"%PDF" + b"x" * 20_000)
    docs = {d.filename: d for d in read_source(str(tmp_path), None, 1000, max_file_bytes=10_000).documents}
    assert docs["big.md"].problem is DocumentStatus.too_large and "max_document_bytes" in docs["big.md"].reason
    assert docs["big.pdf"].problem is None and docs["big.pdf"].content.startswith(b"%PDF")
    assert docs["huge.pdf"].problem is DocumentStatus.too_large and "max_file_bytes" in docs["huge.pdf"].reason


def test_jsonl_records_may_carry_files_to_convert_in_base64(tmp_path):
    pdf = b"%PDF-1.4 not really"
    lines = [
        {"filename": "scan.pdf", "content_base64": base64.b64encode(pdf).decode()},
        {"filename": "notes.bin", "content_base64": base64.b64encode(b"x").decode()},
        {"filename": "bad.pdf", "content_base64": "not base64!"},
    ]
    path = tmp_path / "batch.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    first, unknown, bad = read_source(str(path), None, 1000).documents
    assert (first.filename, first.content, first.convert_as, first.problem) == ("scan.pdf", pdf, ".pdf", None)
    assert first.content_hash == hashlib.sha256(pdf).hexdigest()
    assert unknown.problem is DocumentStatus.invalid_record and "filename ending in one of" in unknown.reason
    assert bad.problem is DocumentStatus.invalid_record and "not base64" in bad.reason


def test_oversized_file_is_not_read_and_is_marked_too_large(tmp_path):
    (tmp_path / "big.md").write_text("x" * 2000)
    (doc,) = read_source(str(tmp_path), None, 1000).documents
    assert doc.problem is DocumentStatus.too_large
    assert doc.content is None
    assert "2000 bytes" in doc.reason
    assert prepare("p", doc).problem is DocumentStatus.too_large


def test_jsonl_source_keeps_bad_lines_as_failed_records(tmp_path):
    path = tmp_path / "batch.jsonl"
    path.write_text(
        json.dumps({"filename": "a.md", "markdown_content": "# A"})
        + "\nnot json\n"
        + json.dumps({"filename": "b.md"})
        + "\n"
    )
    docs = read_source(str(path), None, 1000).documents
    assert [(d.filename, d.problem) for d in docs] == [
        ("a.md", None),
        ("batch.jsonl:2", DocumentStatus.invalid_record),
        ("batch.jsonl:3", DocumentStatus.invalid_record),
    ]


@pytest.mark.parametrize(
    "make_source, message",
    [
        (lambda tmp: str(tmp / "missing"), "does not exist"),
        (lambda tmp: str(tmp), "holds no documents"),
        (lambda tmp: None, "No documents"),
    ],
)
def test_unusable_sources_raise_a_clear_error(tmp_path, make_source, message):
    with pytest.raises(SourceError, match=message):
        read_source(make_source(tmp_path), None, 1000)


def test_source_and_inline_documents_are_mutually_exclusive(tmp_path):
    with pytest.raises(SourceError, match="not both"):
        read_source(str(tmp_path), [("a.md", "# A")], 1000)


def test_a_relative_source_resolves_from_the_source_root(tmp_path, monkeypatch):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A")
    monkeypatch.chdir("/")
    monkeypatch.setenv("BATCH_PIPELINE_SOURCE_ROOT", str(tmp_path))
    assert [d.filename for d in read_source("docs", None, 1000).documents] == ["a.md"]
    assert [d.filename for d in read_source(str(tmp_path / "docs"), None, 1000).documents] == ["a.md"]
    monkeypatch.delenv("BATCH_PIPELINE_SOURCE_ROOT")
    with pytest.raises(SourceError, match="outside the folders this deployment allows"):
        read_source("docs", None, 1000)
