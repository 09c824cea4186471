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


def test_folder_source_reads_text_files_recursively_and_reports_others(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.md").write_text("# A")
    (tmp_path / "sub" / "b.txt").write_text("B")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / ".hidden.md").write_text("hidden")
    contents = read_source(str(tmp_path), None, 1000)
    assert [d.filename for d in contents.documents] == ["a.md", "sub/b.txt"]
    assert contents.ignored == ["image.png"]


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
        (lambda tmp: str(tmp), "holds no .md"),
        (lambda tmp: None, "No documents"),
    ],
)
def test_unusable_sources_raise_a_clear_error(tmp_path, make_source, message):
    with pytest.raises(SourceError, match=message):
        read_source(make_source(tmp_path), None, 1000)


def test_source_and_inline_documents_are_mutually_exclusive(tmp_path):
    with pytest.raises(SourceError, match="not both"):
        read_source(str(tmp_path), [("a.md", "# A")], 1000)
