"""Reading a batch's documents from a folder, a JSONL file or inline config, as raw bytes."""

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from batch_pipeline.outcome import DocumentStatus

TEXT_SUFFIXES = {".md", ".markdown", ".txt"}


class SourceError(ValueError):
    """The batch cannot be read at all: nothing is registered."""


# Dataclasses rather than pydantic models: a batch creates hundreds of thousands of these.
@dataclass(slots=True)
class RawDocument:
    filename: str
    content: bytes | None  # None when the size check refused to read it
    size_bytes: int
    content_hash: str
    problem: DocumentStatus | None = None
    reason: str = ""


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
                problem=DocumentStatus.too_large,
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
                    problem=DocumentStatus.invalid_record,
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
