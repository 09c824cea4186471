"""Which converter reads which file, by its suffix."""

from batch_pipeline.conversion.images import convert_image
from batch_pipeline.conversion.limits import ConversionFailed, ConversionLimits
from batch_pipeline.conversion.mail import convert_email
from batch_pipeline.conversion.office import convert_office
from batch_pipeline.conversion.pdf import convert_pdf
from batch_pipeline.conversion.suffixes import IMAGE_SUFFIXES, OFFICE_SUFFIXES

ATTACHED_TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".csv"}


def convert(data: bytes, suffix: str, limits: ConversionLimits) -> tuple[str, str]:
    """(markdown, converter name and version) for a file's bytes; raises ConversionFailed."""
    if suffix == ".eml":
        return convert_email(data, limits, _convert_attachment)
    return _convert_file(data, suffix, limits)


def _convert_file(data: bytes, suffix: str, limits: ConversionLimits) -> tuple[str, str]:
    if suffix == ".pdf":
        return convert_pdf(data, limits)
    if suffix in IMAGE_SUFFIXES:
        return convert_image(data, limits)
    if suffix in OFFICE_SUFFIXES:
        return convert_office(data, ".html" if suffix == ".htm" else suffix, limits)
    raise ConversionFailed(f"no converter for {suffix or 'files without a suffix'}")


def _convert_attachment(data: bytes, suffix: str, limits: ConversionLimits) -> tuple[str, str]:
    """An e-mail's attachment: text as it is, files as in a batch; e-mails inside e-mails are not opened."""
    if suffix in ATTACHED_TEXT_SUFFIXES:
        return data.decode("utf-8", errors="replace"), "text"
    return _convert_file(data, suffix, limits)
