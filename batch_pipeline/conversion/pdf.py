"""PDF: the text layer with PDFium (pypdfium2), and OCR for pages that are only an image."""

import math
import time

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
import pypdfium2.version

from batch_pipeline.conversion import ocr
from batch_pipeline.conversion.limits import ConversionFailed, ConversionLimits, TooManyPages

# A page with less text than this and an image on it is a scan (a page number is not a text layer).
SCANNED_PAGE_MAX_CHARACTERS = 20
OCR_DPI = 300
# A hostile page size must not render into gigabytes: the resolution drops to stay under this.
MAX_RENDER_PIXELS = 40_000_000


def converter_name(ocr_pages: int) -> str:
    name = f"pypdfium2 {pypdfium2.version.PYPDFIUM_INFO}"
    return f"{name} + tesseract {ocr.tesseract_version()} ({ocr_pages} pages OCR)" if ocr_pages else name


def _open(data: bytes) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as e:
        if "password" in str(e).lower():
            raise ConversionFailed("the PDF is password-protected") from None
        raise ConversionFailed(f"not a readable PDF: {e}") from None


def _is_scanned(page: pdfium.PdfPage, text: str) -> bool:
    if len(text.strip()) >= SCANNED_PAGE_MAX_CHARACTERS:
        return False
    return any(True for _ in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=2))


def _ocr_page(page: pdfium.PdfPage, limits: ConversionLimits, deadline: float) -> str:
    width, height = page.get_size()
    scale = min(OCR_DPI / 72, math.sqrt(MAX_RENDER_PIXELS / max(width * height, 1)))
    image = page.render(scale=scale, grayscale=True).to_pil()
    return ocr.recognise(image, limits.ocr_languages, deadline - time.monotonic())


def convert_pdf(data: bytes, limits: ConversionLimits) -> tuple[str, str]:
    """(markdown, converter): each page's text, pages separated by a rule."""
    deadline = time.monotonic() + limits.timeout_seconds
    document = _open(data)
    try:
        if len(document) > limits.max_pages:
            raise TooManyPages(f"{len(document)} pages, over max_pages {limits.max_pages}")
        pages, ocr_pages = [], 0
        for page in document:
            text = page.get_textpage().get_text_bounded().replace("\r\n", "\n")
            if _is_scanned(page, text):
                text = _ocr_page(page, limits, deadline)
                ocr_pages += 1
            pages.append(text.strip())
    finally:
        document.close()
    return "\n\n---\n\n".join(pages), converter_name(ocr_pages)
