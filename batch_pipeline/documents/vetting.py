"""Vetting a raw document: its id, its text (decoded from UTF-8 or a legacy encoding), or why it has none."""

import codecs
import hashlib
import re
from dataclasses import dataclass

import charset_normalizer

from batch_pipeline.conversion.limits import Conversion
from batch_pipeline.documents.sources import RawDocument
from batch_pipeline.outcome import DocumentStatus

BINARY_SNIFF_BYTES = 8192
WESTERN_FALLBACK = "cp1252"
MIXED_ERRORS = "batch_pipeline.cp1252_where_not_utf8"
MIXED_ENCODING = "utf-8+cp1252"  # the stored encoding of a mixed file
UTF8_MULTIBYTE_RE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


@dataclass(slots=True)
class PreparedDocument:
    """A document ready to register: decoded text, or the reason it has none."""

    document_id: str
    filename: str
    content_hash: str
    size_bytes: int
    text: str | None
    encoding: str | None
    problem: DocumentStatus | None
    reason: str
    converter: str | None = None  # what turned the file into markdown (name and version); None: text


def document_id(project: str, content_hash: str) -> str:
    return hashlib.sha256(f"{project}\0{content_hash}".encode()).hexdigest()[:32]


def _best_legacy_match(content: bytes) -> charset_normalizer.CharsetMatch | None:
    matches = charset_normalizer.from_bytes(content)
    best = matches.best()
    if best is None:
        return None
    # Short Western texts fit several code pages equally well; Windows-1252 (a superset of
    # Latin-1's printable range) is then by far the most likely one.
    for match in matches:
        tied = match.chaos <= best.chaos and match.coherence >= best.coherence - 0.05
        if tied and match.encoding == WESTERN_FALLBACK:
            return match
    return best


def decode(content: bytes) -> tuple[str | None, str | None, DocumentStatus | None, str]:
    """(text, encoding, problem, reason) for a document's bytes."""
    if not content.strip():
        return None, None, DocumentStatus.empty, "the document is empty"
    if b"\x00" in content[:BINARY_SNIFF_BYTES]:
        return None, None, DocumentStatus.unreadable, "binary content (NUL bytes), not text"
    try:
        text, encoding = content.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        if UTF8_MULTIBYTE_RE.search(content):
            # UTF-8 in places (a file edited with two tools): decode it as UTF-8 where it is, and
            # only the bytes that are not as Windows-1252, rather than the whole file as mojibake.
            return _checked(content.decode("utf-8-sig", errors=MIXED_ERRORS), MIXED_ENCODING)
        best = _best_legacy_match(content)
        if best is None:
            return None, None, DocumentStatus.unreadable, "not text in UTF-8 or any encoding charset-normalizer knows"
        text, encoding = str(best), best.encoding
    return _checked(text, encoding)


def _checked(text: str, encoding: str) -> tuple[str | None, str | None, DocumentStatus | None, str]:
    if not text.strip():
        return None, encoding, DocumentStatus.empty, "the document holds only whitespace"
    return text, encoding, None, ""


def _bytes_as_western(error: UnicodeDecodeError) -> tuple[str, int]:
    return error.object[error.start : error.end].decode(WESTERN_FALLBACK, errors="replace"), error.end


codecs.register_error(MIXED_ERRORS, _bytes_as_western)


def _converted(conversion: Conversion, max_text_bytes: int) -> tuple[str | None, DocumentStatus | None, str]:
    if conversion.problem is not None:
        return None, conversion.problem, conversion.reason
    # Stored as text (PostgreSQL's takes no NUL), whatever a converter let through.
    encoded = (conversion.text or "").replace("\x00", "").encode("utf-8", "replace")
    text = encoded.decode("utf-8")
    if not text.strip():
        return None, DocumentStatus.empty, f"{conversion.converter} found no text in it"
    if (size := len(encoded)) > max_text_bytes:
        reason = f"its {size} bytes of markdown are over the limit of {max_text_bytes} bytes (max_document_bytes)"
        return None, DocumentStatus.too_large, reason
    return text, None, ""


def prepare(
    project: str, raw: RawDocument, conversion: Conversion | None = None, max_text_bytes: int = 0
) -> PreparedDocument:
    """A raw document vetted: text files decoded; a converted file's markdown (conversion) checked
    against max_text_bytes. Its id is always that of the original bytes."""
    text, encoding, problem, reason = (None, None, raw.problem, raw.reason)
    if conversion is not None:
        text, problem, reason = _converted(conversion, max_text_bytes)
    elif raw.problem is None and raw.content is not None:
        text, encoding, problem, reason = decode(raw.content)
    return PreparedDocument(
        document_id=document_id(project, raw.content_hash),
        filename=raw.filename,
        content_hash=raw.content_hash,
        size_bytes=raw.size_bytes,
        text=text,
        encoding=encoding,
        problem=problem,
        reason=reason,
        converter=conversion.converter if conversion else None,
    )
