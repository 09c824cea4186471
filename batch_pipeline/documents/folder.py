"""Walking a source folder (or the inbox) without trusting what is in it: regular files only,
symbolic links kept inside the folder unless the launch allows following them (and then only into
the roots the deployment allows), every entry not read listed with its reason, hidden ones
included, nothing that can block (FIFOs) or loop (linked folders) entered."""

import errno
import fnmatch
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

VERSION_CONTROL_FOLDERS = frozenset({".git", ".hg", ".svn"})


@dataclass(frozen=True)
class WalkRules:
    follow_symlinks: bool = False
    link_roots: Sequence[Path] = ()  # with follow_symlinks: where a link may lead (resolved paths)
    excluded: Sequence[str] = ()  # the deployment's glob patterns, matched on the relative path and the name
    own_folders: Mapping[str, str] = field(default_factory=dict)  # top-level name -> why it is not read
    is_private: Callable[[Path], bool] = lambda path: False  # the deployment's own data: never read


@dataclass(frozen=True, slots=True)
class FolderFile:
    name: str  # relative path, as text that can be stored (undecodable bytes shown as \xNN)
    path: Path


@dataclass(frozen=True, slots=True)
class SkippedEntry:
    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


def printable(name: str) -> str:
    """A file name as valid UTF-8 text: bytes the file system gave undecoded become ``\\xNN``, and
    lone surrogates (from JSON) ``\\udNNN``."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _not_read(name: str, top_level: bool, rules: WalkRules) -> str:
    """Why the deployment does not read this entry ("" when it does)."""
    base = name.rsplit("/", 1)[-1]
    if top_level and base in rules.own_folders:
        return rules.own_folders[base]
    if base in VERSION_CONTROL_FOLDERS:
        return "a version-control folder"
    for pattern in rules.excluded:
        if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(base, pattern):
            return f"excluded by the deployment's pattern {pattern!r} ($BATCH_PIPELINE_EXCLUDE)"
    return ""


def _private(path: Path, rules: WalkRules) -> str:
    return (
        "the deployment's own data (the store, reports or Dagster's home): never read" if rules.is_private(path) else ""
    )


def walk_folder(folder: Path, rules: WalkRules | None = None) -> tuple[list[FolderFile], list[SkippedEntry]]:
    """The regular files under ``folder`` (hidden ones included), sorted by name, and the entries
    skipped on the way, with the reason for each."""
    rules = rules or WalkRules()
    root = folder.resolve()
    files: list[FolderFile] = []
    skipped: list[SkippedEntry] = []
    top = os.stat(root)
    seen_folders = {(top.st_dev, top.st_ino)}
    pending = [(root, "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as e:
            skipped.append(SkippedEntry(printable(prefix.rstrip("/") or "."), f"cannot list the folder: {e.strerror}"))
            continue
        for entry in entries:
            name = prefix + entry.name
            shown = printable(name)
            if reason := _not_read(name, not prefix, rules) or _private(Path(entry.path), rules):
                skipped.append(SkippedEntry(shown, reason))
                continue
            try:
                info, problem = _inspect(entry, root, rules)
            except OSError as e:
                skipped.append(SkippedEntry(shown, f"cannot inspect it: {e.strerror}"))
                continue
            if problem:
                skipped.append(SkippedEntry(shown, problem))
            elif stat.S_ISDIR(info.st_mode):
                if (info.st_dev, info.st_ino) in seen_folders:
                    skipped.append(SkippedEntry(shown, "a folder already walked (a link loop)"))
                else:
                    seen_folders.add((info.st_dev, info.st_ino))
                    pending.append((Path(entry.path), name + "/"))
            elif stat.S_ISREG(info.st_mode):
                files.append(FolderFile(shown, Path(entry.path)))
            else:
                skipped.append(SkippedEntry(shown, _kind(info.st_mode)))
    files.sort(key=lambda f: f.name)
    skipped.sort(key=lambda s: s.name)
    return files, skipped


def _inspect(entry: os.DirEntry, root: Path, rules: WalkRules) -> tuple[os.stat_result | None, str]:
    """(stat of what the entry stands for, "") or (None, why it is skipped). A link that leads where
    the source may not read is refused before its target is looked at: the reason tells nothing of it."""
    if not entry.is_symlink():
        return entry.stat(follow_symlinks=False), ""
    try:
        target = Path(entry.path).resolve()
    except (RuntimeError, OSError):
        return None, "a symbolic link loop"
    if not readable_target(target, root, rules):
        if not rules.follow_symlinks:
            return (
                None,
                "a symbolic link out of the folder (follow_symlinks: true reads it if it leads into an allowed one)",
            )
        return (
            None,
            "a symbolic link out of the folders this deployment allows sources in ($BATCH_PIPELINE_SOURCE_ROOTS)",
        )
    try:
        info = os.stat(target)
    except FileNotFoundError:
        return None, "a broken symbolic link (its target does not exist)"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None, "a symbolic link loop"
        return None, f"a symbolic link that cannot be followed: {e.strerror}"
    if stat.S_ISDIR(info.st_mode) and not rules.follow_symlinks:
        return None, "a symbolic link to a folder (follow_symlinks: true walks it)"
    return info, ""


def readable_target(target: Path, root: Path, rules: WalkRules) -> bool:
    """Whether a resolved path may be read from the folder ``root``: inside it, or with
    follow_symlinks inside an allowed folder; never in the deployment's own data."""
    if rules.is_private(target):
        return False
    if target.is_relative_to(root):
        return True
    return rules.follow_symlinks and any(target.is_relative_to(allowed) for allowed in rules.link_roots)
