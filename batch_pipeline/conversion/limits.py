"""What one conversion may cost, and how it ends."""

from dataclasses import dataclass

from batch_pipeline.outcome import DocumentStatus
from batch_pipeline.settings import CONVERSION_MEMORY_ENV, DEFAULT_CONVERSION_MEMORY_MB


@dataclass(frozen=True)
class ConversionLimits:
    max_pages: int = 500  # PDF pages, TIFF frames, slides and sheets count as pages
    timeout_seconds: float = 120.0
    ocr_languages: str = "eng"  # Tesseract's language codes, joined by '+'
    processes: int | None = None  # None: one per core
    memory_mb: int = DEFAULT_CONVERSION_MEMORY_MB  # address space of each worker, and of each child it starts

    def over_memory(self) -> str:
        return f"converting it needed more than {self.memory_mb} MB ({CONVERSION_MEMORY_ENV})"


class ConversionFailed(Exception):
    """The file cannot be converted (corrupt, encrypted, unsupported); the message says why."""


class TooManyPages(ConversionFailed):
    """The file is over max_pages: not converted further."""


@dataclass(slots=True)
class Conversion:
    """A file's markdown and the converter that wrote it, or why there is none."""

    text: str | None
    converter: str | None
    problem: DocumentStatus | None = None  # conversion_failed or too_large
    reason: str = ""
