"""Every format the batch converts, in worker processes, without Dagster: the personal data in
each converted file is found; a file that cannot be converted fails alone, with its reason."""

import pytest

from batch_pipeline.analysis.content_compliance import analyse
from batch_pipeline.conversion.limits import ConversionLimits
from batch_pipeline.conversion.pool import convert_files
from batch_pipeline.outcome import DocumentStatus
from testbed import conversion_fixtures as fixtures

LIMITS = ConversionLimits(processes=2)


def categories(text: str) -> set[str]:
    return {f.category.value for f in analyse(text).findings}


def test_text_formats_convert_to_markdown_the_analyser_reads():
    files = [
        (fixtures.text_pdf(["Contact john_smith@example.com", "Card 4111 1111 1111 1111"]), ".pdf"),
        (
            fixtures.docx(
                "Write to mary_jones@example.net", [["name", "IBAN"], ["Mary", "DE89 3704 0044 0532 0130 00"]]
            ),
            ".docx",
        ),
        (fixtures.pptx("Plan", "AKIAIOSFODNN7EXAMPLE is the deploy key", "notes: bob_lee@example.com"), ".pptx"),
        (fixtures.xlsx([["email", "ssn"], ["ann_x@example.com", "536-22-4471"]]), ".xlsx"),
        (fixtures.html("mail ann_lee@example.com &amp; card 5555 5555 5555 4444"), ".htm"),
        (
            fixtures.eml(
                "Jane Doe <jane_doe@example.com>",
                "IBAN GB82 WEST 1234 5698 7654 32",
                "terms.docx",
                fixtures.docx("Card 4111 1111 1111 1111", [["-"]]),
            ),
            ".eml",
        ),  # fmt: skip
    ]
    pdf, docx, pptx, xlsx, html, eml = convert_files(files, LIMITS)
    assert pdf.converter.startswith("pypdfium2 ") and "john_smith@example.com" in pdf.text  # not john\_smith
    assert categories(pdf.text) == {"email", "payment_card"}
    assert docx.converter.startswith("markitdown ") and "(docx)" in docx.converter
    assert categories(docx.text) == {"email", "iban"}
    assert categories(pptx.text) == {"email", "secret"}  # the speaker notes are read
    assert categories(xlsx.text) == {"email", "ssn"}
    assert categories(html.text) == {"email", "payment_card"} and "tracking_id" not in html.text
    for converted, value in [
        (docx, "mary_jones@example.net"),
        (xlsx, "ann_x@example.com"),
        (html, "ann_lee@example.com"),
    ]:
        assert value in converted.text  # markdown escaping (mary\\_jones) would hide the address's first part
    assert eml.converter.startswith("email") and "## Attachment: terms.docx" in eml.text
    assert categories(eml.text) == {"email", "iban", "payment_card"}  # headers, HTML body, attachment


def test_scans_and_image_only_pdf_pages_are_read_with_ocr(tesseract):
    files = [
        (fixtures.scanned_pdf(["Scanned letter", "IBAN DE89 3704 0044 0532 0130 00"]), ".pdf"),
        (fixtures.png_scan(["Signed form", "Card: 4111 1111 1111 1111"]), ".png"),
    ]
    pdf, png = convert_files(files, LIMITS)
    assert "tesseract" in pdf.converter and "(1 pages OCR)" in pdf.converter
    assert categories(pdf.text) == {"iban"}
    assert png.converter.startswith("tesseract ")
    assert categories(png.text) == {"payment_card"}


def test_without_tesseract_scans_fail_alone_saying_how_to_enable_ocr(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # the workers inherit a PATH with no tesseract on it
    files = [(fixtures.png_scan(["Card: 4111 1111 1111 1111"]), ".png"), (fixtures.text_pdf(["plain text"]), ".pdf")]
    scan, pdf = convert_files(files, LIMITS)
    assert scan.problem is DocumentStatus.conversion_failed
    assert "apt-get install tesseract-ocr" in scan.reason
    assert pdf.problem is None and pdf.text == "plain text"


def test_files_that_cannot_be_converted_fail_alone_with_their_reason():
    files = [
        (fixtures.text_pdf(["fine"])[:300], ".pdf"),
        (fixtures.text_pdf(["secret"], password="pw"), ".pdf"),
        (b"this is not a zip archive", ".docx"),
        (b"\x89PNG\r\n\x1a\n broken", ".png"),
        (fixtures.text_pdf(["still fine"]), ".pdf"),
    ]
    truncated, protected, docx, png, fine = convert_files(files, LIMITS)
    assert truncated.problem is DocumentStatus.conversion_failed and "not a readable PDF" in truncated.reason
    assert protected.problem is DocumentStatus.conversion_failed and "password-protected" in protected.reason
    assert docx.problem is DocumentStatus.conversion_failed and "not a zip archive" in docx.reason
    assert png.problem is DocumentStatus.conversion_failed
    assert fine.problem is None and fine.text == "still fine"


def test_a_conversion_over_its_time_limit_is_stopped_and_fails_alone(tesseract):
    slow = fixtures.scanned_pdf(["A scan takes OCR time"] * 8)
    files = [(slow, ".pdf"), (fixtures.text_pdf(["quick"]), ".pdf")]
    stopped, quick = convert_files(files, ConversionLimits(timeout_seconds=0.05, processes=1))
    assert stopped.problem is DocumentStatus.conversion_failed
    assert "longer than 0.05 s (conversion_timeout_seconds)" in stopped.reason
    assert quick.text == "quick"  # its worker was replaced


@pytest.mark.parametrize(
    ("data", "suffix"),
    [
        (lambda: fixtures.text_pdf(["page"]), ".pdf"),
        (lambda: fixtures.pptx("a", "b", "c"), ".pptx"),
    ],
)
def test_files_over_max_pages_are_too_large(data, suffix):
    (conversion,) = convert_files([(data(), suffix)], ConversionLimits(max_pages=0, processes=1))
    assert conversion.problem is DocumentStatus.too_large and "over max_pages 0" in conversion.reason
