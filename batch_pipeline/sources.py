"""Reading a batch's documents from a folder, a JSONL file or inline config, and vetting each one."""

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import charset_normalizer

TEXT_SUFFIXES = {".md", ".markdown", ".txt"}
BINARY_SNIFF_BYTES = 8192
WESTERN_FALLBACK = "cp1252"


class SourceError(ValueError):
    """The batch cannot be read at all: nothing is registered."""


class InputProblem(StrEnum):
    """Why a document could not be analysed; stored as the document's status."""

    empty = "empty"
    unreadable = "unreadable"
    too_large = "too_large"
    invalid_record = "invalid_record"


# Dataclasses rather than pydantic models: a batch creates hundreds of thousands of these.
@dataclass(slots=True)
class RawDocument:
    filename: str
    content: bytes | None  # None when the size check refused to read it
    size_bytes: int
    content_hash: str
    problem: InputProblem | None = None
    reason: str = ""


@dataclass(slots=True)
class PreparedDocument:
    """A document ready to register: decoded text, or the reason it has none."""

    document_id: str
    filename: str
    content_hash: str
    size_bytes: int
    text: str | None
    encoding: str | None
    problem: InputProblem | None
    reason: str


def document_id(project: str, content_hash: str) -> str:
    return hashlib.sha256(f"{project}\0{content_hash}".encode()).hexdigest()[:32]


def _raw(filename: str, content: bytes) -> RawDocument:
    return RawDocument(
        filename=filename, content=content, size_bytes=len(content), content_hash=hashlib.sha256(content).hexdigest()
    )


def _read_folder(folder: Path, max_bytes: int, ignored: list[str]) -> Iterator[RawDocument]:
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if path.suffix.lower() not in TEXT_SUFFIXES:
            ignored.append(relative)
            continue
        size = path.stat().st_size
        if size > max_bytes:
            with path.open("rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            yield RawDocument(
                filename=relative,
                content=None,
                size_bytes=size,
                content_hash=digest,
                problem=InputProblem.too_large,
                reason=f"{size} bytes is over the limit of {max_bytes} bytes (max_document_bytes)",
            )
            continue
        yield _raw(relative, path.read_bytes())


def _read_jsonl(path: Path) -> Iterator[RawDocument]:
    with path.open("rb") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            label = f"{path.name}:{line_number}"
            try:
                record = json.loads(line)
                filename, content = record["filename"], record["markdown_content"]
                if not isinstance(filename, str) or not isinstance(content, str):
                    raise TypeError("filename and markdown_content must be strings")
            except (ValueError, KeyError, TypeError) as e:
                yield RawDocument(
                    filename=label,
                    content=None,
                    size_bytes=len(line),
                    content_hash=hashlib.sha256(line).hexdigest(),
                    problem=InputProblem.invalid_record,
                    reason=f"line {line_number} is not a JSON object with string fields filename and markdown_content: {e}",
                )
                continue
            yield _raw(filename, content.encode("utf-8"))


def read_source(
    source: str | None,
    inline: Sequence[tuple[str, str]] | None,
    max_bytes: int,
    ignored: list[str] | None = None,
) -> list[RawDocument]:
    """All documents of a batch. Raises SourceError when there is no batch to speak of."""
    if source and inline:
        raise SourceError("Give either `source` or `documents`, not both.")
    if inline:
        return [_raw(filename, text.encode("utf-8")) for filename, text in inline]
    if not source:
        raise SourceError("No documents: set `source` (a folder or a .jsonl file) or `documents`.")
    path = Path(source).expanduser()
    if not path.exists():
        raise SourceError(f"Source {source!r} does not exist (resolved to {path.resolve()}).")
    if path.is_dir():
        documents = list(_read_folder(path, max_bytes, ignored if ignored is not None else []))
    elif path.suffix.lower() == ".jsonl":
        documents = list(_read_jsonl(path))
    else:
        raise SourceError(f"Source {source!r} is neither a folder nor a .jsonl file.")
    if not documents:
        raise SourceError(f"Source {source!r} holds no .md, .markdown, .txt files or JSONL records.")
    return documents


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


def decode(content: bytes) -> tuple[str | None, str | None, InputProblem | None, str]:
    """(text, encoding, problem, reason) for a document's bytes."""
    if not content.strip():
        return None, None, InputProblem.empty, "the document is empty"
    if b"\x00" in content[:BINARY_SNIFF_BYTES]:
        return None, None, InputProblem.unreadable, "binary content (NUL bytes), not text"
    try:
        text, encoding = content.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        best = _best_legacy_match(content)
        if best is None:
            return None, None, InputProblem.unreadable, "not text in UTF-8 or any encoding charset-normalizer knows"
        text, encoding = str(best), best.encoding
    if not text.strip():
        return None, encoding, InputProblem.empty, "the document holds only whitespace"
    return text, encoding, None, ""


def prepare(project: str, raw: RawDocument) -> PreparedDocument:
    text, encoding, problem, reason = (None, None, raw.problem, raw.reason)
    if raw.problem is None and raw.content is not None:
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
    )
