"""Scans and photos of documents (PNG, JPEG, TIFF): OCR with Tesseract, every TIFF frame a page."""

import time
import warnings
from io import BytesIO

from PIL import Image, ImageSequence, UnidentifiedImageError

from batch_pipeline.conversion import ocr
from batch_pipeline.conversion.limits import ConversionFailed, ConversionLimits, TooManyPages

MAX_IMAGE_PIXELS = 100_000_000


def convert_image(data: bytes, limits: ConversionLimits) -> tuple[str, str]:
    deadline = time.monotonic() + limits.timeout_seconds
    ocr.tesseract_version()  # fail early, with how to enable OCR
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(BytesIO(data))
            frames = getattr(image, "n_frames", 1)
            if frames > limits.max_pages:
                raise TooManyPages(f"{frames} frames, over max_pages {limits.max_pages}")
            pages = [
                ocr.recognise(frame.convert("L"), limits.ocr_languages, deadline - time.monotonic()).strip()
                for frame in ImageSequence.Iterator(image)
            ]
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ConversionFailed(f"not a readable image: {e}") from None
    return "\n\n---\n\n".join(pages), f"tesseract {ocr.tesseract_version()}"
