"""Optical character recognition with Tesseract (Debian's tesseract-ocr), for scans and
image-only PDF pages. Without Tesseract those documents fail alone, saying how to enable it."""

import os
from functools import cache

import pytesseract
from PIL import Image

from batch_pipeline.conversion.limits import ConversionFailed

HOW_TO_ENABLE = (
    "OCR needs Tesseract, which is not installed: install Debian's tesseract-ocr and tesseract-ocr-eng "
    "(apt-get install tesseract-ocr tesseract-ocr-eng), or put the tesseract binary on PATH"
)
# Tesseract's OpenMP threads fight the other conversions for the cores: one thread each.
os.environ.setdefault("OMP_THREAD_LIMIT", "1")


@cache
def tesseract_version() -> str:
    try:
        return str(pytesseract.get_tesseract_version())
    except pytesseract.TesseractNotFoundError:
        raise ConversionFailed(HOW_TO_ENABLE) from None


def recognise(image: Image.Image, languages: str, timeout_seconds: float) -> str:
    """The text Tesseract reads in the image; ConversionFailed when it cannot run."""
    tesseract_version()
    try:
        return pytesseract.image_to_string(image, lang=languages, timeout=max(1, int(timeout_seconds)))
    except RuntimeError as e:  # pytesseract's timeout
        raise ConversionFailed(f"OCR took longer than {timeout_seconds:.0f} s") from e
    except pytesseract.TesseractError as e:
        raise ConversionFailed(f"Tesseract failed: {e.message.strip() or e}") from e
