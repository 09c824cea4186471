"""A folder of PDFs, Office files, a web page, an e-mail and scans through the whole job: what
each file holds is found, files that cannot be converted fail alone, the same file twice is one
document, and a re-run converts nothing again."""

import json

import pandas as pd
import pytest

from batch_pipeline.conversion.pool import convert_files
from batch_pipeline_tests.conftest import batch_config, rows_of, run_job
from testbed import conversion_fixtures as fixtures

CARD = "4111 1111 1111 1111"
IBAN = "DE89 3704 0044 0532 0130 00"


@pytest.fixture
def drive(tmp_path):
    """A shared drive as a compliance sweep meets it."""
    folder = tmp_path / "drive"
    (folder / "mail").mkdir(parents=True)
    files = {
        "contract.pdf": fixtures.text_pdf(["Customer: anna_berg@example.com", f"Card {CARD}"]),
        "scanned_letter.pdf": fixtures.scanned_pdf(["Scanned letter", f"IBAN {IBAN}"]),
        "review.docx": fixtures.docx("Reviewer: tom_hale@example.com", [["IBAN"], [IBAN]]),
        "deck.pptx": fixtures.pptx("Rollout", "Deploy key AKIAIOSFODNN7EXAMPLE", "call notes"),
        "ledger.xlsx": fixtures.xlsx([["customer", "card"], ["Ann", CARD]]),
        "saved_page.html": fixtures.html("Write to web_team@example.com"),
        "mail/request.eml": fixtures.eml("Jane Doe <jane_doe@example.com>", f"IBAN {IBAN}", "notes.txt", b"nothing"),
        "form_scan.png": fixtures.png_scan(["Signed form", f"Card: {CARD}"]),
        "truncated.pdf": fixtures.text_pdf(["lost"])[:300],
        "protected.pdf": fixtures.text_pdf(["hidden"], password="pw"),
        "notes.md": b"# Notes\n\nNothing to see.\n",
    }
    files["copy_of_contract.pdf"] = files["contract.pdf"]
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def categories(result_json: str) -> set[str]:
    return {f["category"] for f in json.loads(result_json)["findings"]}


def test_every_format_is_converted_analysed_or_failed_alone(pipeline_home, instance, drive, tesseract):
    result = run_job(instance, batch_config(str(drive)))
    assert result.success
    rows = rows_of(result.run_id)
    assert "copy_of_contract.pdf" not in rows.index  # same bytes as contract.pdf: one document
    expected = {
        "contract.pdf": {"email", "payment_card"},
        "scanned_letter.pdf": {"iban"},
        "review.docx": {"email", "iban"},
        "deck.pptx": {"secret"},
        "ledger.xlsx": {"payment_card"},
        "saved_page.html": {"email"},
        "mail/request.eml": {"email", "iban"},
        "form_scan.png": {"payment_card"},
        "notes.md": set(),
    }
    for name, found in expected.items():
        assert rows.loc[name, "status"] == "ok", (name, rows.loc[name, "error"])
        assert categories(rows.loc[name, "result"]) == found, name
    assert rows.loc["truncated.pdf", "status"] == "conversion_failed"
    assert "not a readable PDF" in rows.loc["truncated.pdf", "error"]
    assert rows.loc["protected.pdf", "status"] == "conversion_failed"
    assert "password-protected" in rows.loc["protected.pdf", "error"]
    assert rows.loc["contract.pdf", "converter"].startswith("pypdfium2 ")
    assert "tesseract" in rows.loc["form_scan.png", "converter"]
    assert rows.loc["review.docx", "converter"].startswith("markitdown ")
    assert pd.isna(rows.loc["notes.md", "converter"])  # text is stored as it is

    (materialization,) = result.asset_materializations_for_node("aggregate")
    assert materialization.metadata["failed"].value == 2


def test_a_rerun_converts_only_the_files_that_failed(pipeline_home, instance, drive, monkeypatch):
    for scan in ("scanned_letter.pdf", "form_scan.png"):  # OCR is covered above; this needs none
        (drive / scan).unlink()
    first = run_job(instance, batch_config(str(drive)))
    assert first.success

    converted_again = []
    real_convert_files = convert_files

    def recording_convert_files(files, limits):
        converted_again.extend(files)
        return real_convert_files(files, limits)

    monkeypatch.setattr("batch_pipeline.conversion.pool.convert_files", recording_convert_files)
    second = run_job(instance, batch_config(str(drive), force=True))
    assert second.success
    # The two PDFs that failed are tried again (a timeout or a missing Tesseract may be gone); the rest are reused.
    assert sorted(data for data, _ in converted_again) == sorted(
        (drive / name).read_bytes() for name in ("truncated.pdf", "protected.pdf")
    )
    before, after = rows_of(first.run_id), rows_of(second.run_id)
    assert list(after["status"]) == list(before["status"])
    assert list(after["converter"].fillna("")) == list(before["converter"].fillna(""))


def test_conversion_limits_are_launch_config(pipeline_home, instance, drive):
    result = run_job(instance, batch_config(str(drive), max_pages=0), raise_on_error=False)
    assert not result.success
    assert "max_pages must be at least 1, got 0" in str(result.failure_data_for_node("create_document_records"))
