"""Word, PowerPoint and Excel files and web pages, with markitdown's converters (mammoth,
python-pptx, pandas, markdownify), called by format: a corrupt .docx fails, rather than being
guessed into plain text."""

import re
import zipfile
from functools import cache
from importlib.metadata import version
from io import BytesIO

from batch_pipeline.conversion.limits import ConversionFailed, ConversionLimits, TooManyPages

# Office files are zip archives: one that expands past this is refused before it is parsed.
MAX_EXPANDED_BYTES = 1_000_000_000
PAGE_PARTS = {".pptx": re.compile(r"ppt/slides/slide\d+\.xml"), ".xlsx": re.compile(r"xl/worksheets/sheet\d+\.xml")}
# Markdown escaping would hide values from the analysers (john\_smith@x.com is no e-mail address).
NO_ESCAPING = {"escape_underscores": False, "escape_asterisks": False, "escape_misc": False}


@cache
def _converters() -> dict:
    from markitdown.converters import DocxConverter, HtmlConverter, PptxConverter, XlsxConverter

    return {".docx": DocxConverter(), ".pptx": PptxConverter(), ".xlsx": XlsxConverter(), ".html": HtmlConverter()}


def converter_name(suffix: str) -> str:
    return f"markitdown {version('markitdown')} ({suffix.lstrip('.')})"


def _check_archive(data: bytes, suffix: str, limits: ConversionLimits) -> None:
    try:
        with zipfile.ZipFile(BytesIO(data)) as archive:
            entries = archive.infolist()
    except zipfile.BadZipFile:
        raise ConversionFailed(f"not a readable {suffix} file (not a zip archive)") from None
    expanded = sum(entry.file_size for entry in entries)
    if expanded > MAX_EXPANDED_BYTES:
        raise ConversionFailed(f"the archive expands to {expanded} bytes, over {MAX_EXPANDED_BYTES}")
    if pattern := PAGE_PARTS.get(suffix):
        pages = sum(1 for entry in entries if pattern.fullmatch(entry.filename))
        if pages > limits.max_pages:
            raise TooManyPages(f"{pages} slides or sheets, over max_pages {limits.max_pages}")


def html_to_markdown(html: bytes | str) -> str:
    from markitdown import StreamInfo

    data = html.encode("utf-8") if isinstance(html, str) else html
    info = StreamInfo(extension=".html", charset="utf-8" if isinstance(html, str) else None)
    return _converters()[".html"].convert(BytesIO(data), info, **NO_ESCAPING).markdown


def convert_office(data: bytes, suffix: str, limits: ConversionLimits) -> tuple[str, str]:
    from markitdown import StreamInfo

    if suffix == ".html":
        return html_to_markdown(data), converter_name(suffix)
    _check_archive(data, suffix, limits)
    try:
        result = _converters()[suffix].convert(BytesIO(data), StreamInfo(extension=suffix), **NO_ESCAPING)
    except (KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ConversionFailed(f"not a readable {suffix} file: {type(e).__name__}: {e}") from None
    return result.markdown, converter_name(suffix)
