import pytest

from batch_pipeline.analysis.document_metadata import analyse, find_dates
from batch_pipeline_tests.conftest import EXAMPLE_DOCS


def test_english_release_notes():
    result = analyse((EXAMPLE_DOCS / "release_notes.md").read_text())
    assert result.title == "Release notes 3.2.0"
    assert [(h.level, h.text) for h in result.headings] == [
        (1, "Release notes 3.2.0"),
        (2, "Highlights"),
        (2, "Deprecations"),
    ]
    assert result.language == "en"
    assert result.links == ["https://docs.example.com/api/idempotency", "https://docs.example.com/api/reporting-v2"]
    assert result.dates_mentioned == ["2024-08-20", "March 1, 2025"]
    assert 60 < result.word_count < 100
    assert result.reading_time_minutes == round(result.word_count / 200, 1)
    assert result.summary


@pytest.mark.parametrize(
    "filename, language",
    [("rapport_trimestriel.md", "fr"), ("notas_reunion.md", "es"), ("produktbeschreibung.md", "de")],
)
def test_non_english_documents(filename, language):
    result = analyse((EXAMPLE_DOCS / filename).read_text())
    assert result.language == language
    assert result.headings[0].level == 1
    assert result.title == result.headings[0].text


def test_summary_is_extracted_from_the_document():
    text = (EXAMPLE_DOCS / "rapport_trimestriel.md").read_text()
    flat = " ".join(text.split())
    result = analyse(text)
    sentences = [s for s in result.summary.split(". ") if s]
    assert 1 <= len(sentences) <= 2
    for sentence in sentences:
        assert sentence.rstrip(".") in flat


def test_plain_text_file_takes_its_first_line_as_title():
    result = analyse((EXAMPLE_DOCS / "meeting_minutes.txt").read_text())
    assert result.title == "Architecture review - minutes"
    assert result.headings == []
    assert result.dates_mentioned == ["2024-09-05", "2024-10-03"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("on 2024-02-30 and 2024-02-28", ["2024-02-28"]),  # impossible dates are dropped
        ("Due 30 September 2024.", ["30 September 2024"]),
        ("Signed 15.10.2024 in Berlin", ["15.10.2024"]),
        ("Version 1.2.3 shipped", []),
    ],
)
def test_find_dates(text, expected):
    assert find_dates(text) == expected


def test_empty_text():
    result = analyse("")
    assert (result.word_count, result.language, result.title, result.summary) == (0, "und", "", "")
