"""Walking a source folder (or the inbox) without trusting what is in it: regular files only,
symbolic links kept inside the folder unless the launch allows following them, every skipped
entry listed with its reason, nothing that can block (FIFOs) or loop (linked folders) entered."""

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path


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


def walk_folder(folder: Path, follow_symlinks: bool = False) -> tuple[list[FolderFile], list[SkippedEntry]]:
    """The regular files under ``folder`` (names starting with a dot, and what is below them, are
    left out), sorted by name, and the entries skipped on the way, with the reason for each."""
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
            if entry.name.startswith("."):
                continue
            name = prefix + entry.name
            shown = printable(name)
            try:
                info, problem = _inspect(entry, root, follow_symlinks)
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


def _inspect(entry: os.DirEntry, root: Path, follow_symlinks: bool) -> tuple[os.stat_result | None, str]:
    """(stat of what the entry stands for, "") or (None, why it is skipped)."""
    if not entry.is_symlink():
        return entry.stat(follow_symlinks=False), ""
    try:
        target = Path(entry.path).resolve(strict=True)
    except FileNotFoundError:
        return None, "a broken symbolic link (its target does not exist)"
    except RuntimeError:
        return None, "a symbolic link loop"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None, "a symbolic link loop"
        return None, f"a symbolic link that cannot be followed: {e.strerror}"
    if not follow_symlinks and not target.is_relative_to(root):
        return None, f"a symbolic link to {printable(str(target))}, outside the folder (follow_symlinks: true reads it)"
    info = os.stat(target)
    if stat.S_ISDIR(info.st_mode) and not follow_symlinks:
        return None, "a symbolic link to a folder (follow_symlinks: true walks it)"
    return info, ""
