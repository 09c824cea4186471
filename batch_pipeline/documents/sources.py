"""Reading a batch's documents from a folder, a JSONL file or inline config, as raw bytes:
text files, and files to convert (PDF, Office, HTML, e-mail, images) marked with their format.

Whatever goes wrong with one file or line (it vanished, may not be read, is too large, is not a
JSON record, is not valid Unicode) ends that document alone with a status and a reason; only a
source that cannot be read at all raises SourceError.
"""

import base64
import binascii
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import BinaryIO

from batch_pipeline import settings
from batch_pipeline.conversion.suffixes import CONVERTIBLE_SUFFIXES, READ_SUFFIXES, reading_suffix
from batch_pipeline.documents.folder import SkippedEntry, WalkRules, printable, readable_target, walk_folder
from batch_pipeline.outcome import DocumentStatus

READ_CHUNK = 1 << 20
MAX_FILE_BYTES = 50_000_000


class SourceError(ValueError):
    """The batch cannot be read at all: nothing is registered."""


# Dataclasses rather than pydantic models: a batch creates hundreds of thousands of these.
@dataclass(slots=True)
class RawDocument:
    filename: str
    content: bytes | None  # None when it was not (wholly) read
    size_bytes: int
    content_hash: str
    problem: DocumentStatus | None = None
    reason: str = ""
    convert_as: str | None = None  # the suffix of a file to convert ('.pdf'); None: text


@dataclass(frozen=True)
class ReadLimits:
    max_document_bytes: int  # a text document (a file, a JSONL line, an inline document)
    max_file_bytes: int  # a file to convert


@dataclass
class SourceContents:
    documents: list[RawDocument]
    ignored: list[str] = field(default_factory=list)  # files of a format that is not read
    skipped: list[SkippedEntry] = field(default_factory=list)  # entries not read, with why


def _raw(filename: str, content: bytes) -> RawDocument:
    return RawDocument(
        filename=filename, content=content, size_bytes=len(content), content_hash=hashlib.sha256(content).hexdigest()
    )


def _failed(filename: str, problem: DocumentStatus, reason: str, identity: bytes, size: int = 0) -> RawDocument:
    # Documents that were not read are identified by what is known of them (prefixed, so their
    # hash never equals a readable document's).
    digest = hashlib.sha256(problem.value.encode() + b"\0" + identity).hexdigest()
    return RawDocument(filename, None, size, digest, problem, reason)


def _too_large(
    filename: str, size: int, head: bytes, max_bytes: int, what: str = "", limit: str = "max_document_bytes"
) -> RawDocument:
    # Identified by its size and its first max_bytes bytes: it is never read further.
    reason = f"{what or f'{size} bytes'} is over the limit of {max_bytes} bytes ({limit}); not read further"
    return _failed(filename, DocumentStatus.too_large, reason, str(size).encode() + b"\0" + head[:max_bytes], size)


def open_regular(path: Path, allowed: Callable[[Path], bool] | None = None) -> BinaryIO:
    """Open a file for reading without blocking, refusing anything but a regular file (a FIFO
    swapped in after the folder was listed would otherwise block the run) and, with ``allowed``,
    a file that is no longer where the listing found it (a link swapped in since)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a regular file")
        if allowed is not None and not allowed(_opened_path(fd, path)):
            raise OSError("it now leads out of the folders it may be read from (changed since it was listed)")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _opened_path(fd: int, path: Path) -> Path:
    """Where the opened file really is (Linux: what /proc says of the descriptor)."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return path.resolve()


def read_file(
    name: str,
    path: Path,
    max_bytes: int,
    limit: str = "max_document_bytes",
    allowed: Callable[[Path], bool] | None = None,
) -> RawDocument:
    """One file, read up to max_bytes + 1 bytes: sizes the OS reports as 0 (/proc) are not trusted."""
    try:
        with open_regular(path, allowed) as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                return _too_large(name, size, f.read(max_bytes), max_bytes, limit=limit)
            content = f.read(max_bytes + 1)
    except OSError as e:
        reason = f"cannot read it: {e.strerror or e}"
        return _failed(name, DocumentStatus.unreadable, reason, name.encode("utf-8", "backslashreplace"))
    if len(content) > max_bytes:
        return _too_large(name, len(content), content, max_bytes, f"more than {max_bytes} bytes", limit)
    return _raw(name, content)


def _read_folder(folder: Path, limits: ReadLimits, follow_symlinks: bool) -> SourceContents:
    rules = WalkRules(
        follow_symlinks, settings.source_roots(), settings.excluded_patterns(), is_private=settings.is_private
    )
    files, skipped = walk_folder(folder, rules)
    root = folder.resolve()
    allowed = partial(readable_target, root=root, rules=rules)
    contents = SourceContents(documents=[], skipped=skipped)
    for file in files:
        suffix = reading_suffix(file.path.name)
        if suffix not in READ_SUFFIXES:
            contents.ignored.append(file.name)
        elif suffix in CONVERTIBLE_SUFFIXES:
            document = read_file(file.name, file.path, limits.max_file_bytes, "max_file_bytes", allowed)
            document.convert_as = suffix
            contents.documents.append(document)
        else:
            contents.documents.append(read_file(file.name, file.path, limits.max_document_bytes, allowed=allowed))
    return contents


def _lines(f: BinaryIO, max_bytes: int) -> Iterator[tuple[bytes, bool]]:
    """(line, whole) for each line; a line over max_bytes is cut there (whole=False) and the rest
    of it is skipped unread into memory."""
    while line := f.readline(max_bytes + 1):
        if len(line) <= max_bytes or line.endswith(b"\n"):
            yield line, True
            continue
        yield line, False
        while (rest := f.readline(READ_CHUNK)) and not rest.endswith(b"\n"):
            pass


def _file_record(label: str, filename: str, encoded: object, line_number: int, max_file_bytes: int) -> RawDocument:
    """A record carrying a file to convert, base64-encoded (its filename's suffix names the format)."""
    suffix = Path(filename).suffix.lower()
    problem = ""
    if suffix not in CONVERTIBLE_SUFFIXES:
        problem = f"content_base64 needs a filename ending in one of {', '.join(sorted(CONVERTIBLE_SUFFIXES))}"
    elif not isinstance(encoded, str):
        problem = "content_base64 must be a string"
    else:
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as e:
            problem = f"content_base64 is not base64: {e}"
    if problem:
        return _failed(label, DocumentStatus.invalid_record, f"line {line_number}: {problem}", label.encode())
    if len(data) > max_file_bytes:
        return _too_large(printable(filename), len(data), data, max_file_bytes, limit="max_file_bytes")
    document = _raw(printable(filename), data)
    document.convert_as = suffix
    return document


def _record(label: str, line: bytes, line_number: int, limits: ReadLimits) -> RawDocument:
    try:
        record = json.loads(line)
        filename = record["filename"]
        if isinstance(record, dict) and "content_base64" in record and isinstance(filename, str):
            return _file_record(label, filename, record["content_base64"], line_number, limits.max_file_bytes)
        content = record["markdown_content"]
        if not isinstance(filename, str) or not isinstance(content, str):
            raise TypeError("filename and markdown_content must be strings")
        encoded = content.encode("utf-8")
    except UnicodeEncodeError as e:
        reason = f"line {line_number}: markdown_content is not valid Unicode text ({e.reason} at {e.start})"
        return _failed(label, DocumentStatus.invalid_record, reason, line)
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        problem = "nested too deeply" if isinstance(e, RecursionError) else e
        reason = (
            f"line {line_number} is not a JSON object with string fields filename and markdown_content "
            f"(or content_base64): {problem}"
        )
        return _failed(label, DocumentStatus.invalid_record, reason, line, len(line))
    if len(line) > limits.max_document_bytes:
        return _too_large(label, len(line), line, limits.max_document_bytes, f"line {line_number}")
    return _raw(printable(filename), encoded)


def _read_jsonl(path: Path, limits: ReadLimits) -> SourceContents:
    documents = []
    # A line may carry a file in base64 (4 characters for 3 bytes, plus the JSON around it).
    max_line = max(limits.max_document_bytes, limits.max_file_bytes * 4 // 3 + 4096)
    try:
        with open_regular(path, allowed_source) as f:
            for line_number, (line, whole) in enumerate(_lines(f, max_line), start=1):
                label = f"{printable(path.name)}:{line_number}"
                if not whole:
                    documents.append(_too_large(label, len(line), line, max_line, f"line {line_number}"))
                elif line.strip():
                    documents.append(_record(label, line, line_number, limits))
    except OSError as e:
        raise SourceError(f"Cannot read {printable(str(path))}: {e.strerror or e}") from e
    return SourceContents(documents=documents)


def _inline(documents: Sequence[tuple[str, str]], max_bytes: int) -> SourceContents:
    read = []
    for filename, text in documents:
        name = printable(filename)
        try:
            content = text.encode("utf-8")
        except UnicodeEncodeError as e:
            reason = f"markdown_content is not valid Unicode text ({e.reason} at {e.start})"
            read.append(_failed(name, DocumentStatus.invalid_record, reason, name.encode()))
            continue
        read.append(
            _too_large(name, len(content), content, max_bytes) if len(content) > max_bytes else _raw(name, content)
        )
    return SourceContents(documents=read)


def source_problem(source: str | None, inline: Sequence[tuple[str, str]] | None) -> str:
    """Why the batch's source cannot be read at all ("" when it can), found without reading it."""
    if source and inline:
        return "Give either `source` or `documents`, not both."
    if inline:
        return ""
    if not source:
        return "No documents: set `source` (a folder or a .jsonl file) or `documents`."
    path = source_path(source)
    if problem := _outside_problem("Source", source, path):
        return problem
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"Source {source!r} does not exist (resolved to {path.absolute()})."
    except OSError as e:
        return f"Source {source!r} cannot be read: {e.strerror}."
    if stat.S_ISDIR(mode):
        return ""
    if path.suffix.lower() != ".jsonl":
        return f"Source {source!r} is neither a folder nor a .jsonl file."
    if not stat.S_ISREG(mode):
        return f"Source {source!r} is not a regular file (a FIFO, socket or device is not read)."
    return ""


def labels_problem(labels: str) -> str:
    """Why a run's labels file cannot be read ("" when it can): the source's rules, for one .jsonl file."""
    path = source_path(labels)
    if problem := _outside_problem("Labels file", labels, path):
        return problem
    try:
        mode = path.stat().st_mode
    except OSError as e:
        return f"Labels file {labels!r} cannot be read: {e.strerror} (resolved to {path.absolute()})."
    if not stat.S_ISREG(mode) or path.suffix.lower() != ".jsonl":
        return f"Labels file {labels!r} is not a .jsonl file."
    return ""


def _outside_problem(what: str, given: str, path: Path) -> str:
    roots = settings.source_roots()
    if settings.is_private(path):
        return f"{what} {given!r} is the deployment's own data (the store, reports or Dagster's home): never read."
    if not any(path.is_relative_to(root) for root in roots):
        # Checked before anything about the path is looked at: a launch learns nothing of what lies outside.
        allowed = ", ".join(str(root) for root in roots)
        return (
            f"{what} {given!r} is outside the folders this deployment allows sources in: {allowed} "
            f"(${settings.SOURCE_ROOTS_ENV}; relative paths resolve from ${settings.SOURCE_ROOT_ENV})."
        )
    return ""


def allowed_source(path: Path) -> bool:
    """Whether a resolved path may be a source: inside an allowed root, outside the deployment's own data."""
    return any(path.is_relative_to(root) for root in settings.source_roots()) and not settings.is_private(path)


def source_path(source: str) -> Path:
    """The source with ``~`` expanded, relative to the source root, ``..`` and links resolved."""
    return (settings.source_root() / Path(source).expanduser()).resolve()


def read_source(
    source: str | None,
    inline: Sequence[tuple[str, str]] | None,
    max_bytes: int,
    follow_symlinks: bool = False,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> SourceContents:
    """All documents of a batch. Raises SourceError when there is no batch to speak of."""
    if problem := source_problem(source, inline):
        raise SourceError(problem)
    limits = ReadLimits(max_document_bytes=max_bytes, max_file_bytes=max_file_bytes)
    if inline:
        return _inline(inline, limits.max_document_bytes)
    path = source_path(source or "")
    contents = _read_folder(path, limits, follow_symlinks) if path.is_dir() else _read_jsonl(path, limits)
    if not contents.documents:
        skipped = f"; skipped: {', '.join(map(str, contents.skipped[:5]))}" if contents.skipped else ""
        kinds = ", ".join(sorted(READ_SUFFIXES))
        raise SourceError(f"Source {source!r} holds no documents ({kinds} files or JSONL records){skipped}.")
    return contents
