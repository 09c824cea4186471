"""What a conversion may take and what it leaves: each worker process leads a process group of its
own (Tesseract, its child, is in it) under the deployment's memory limit, and each conversion keeps
its temporary files in a private folder, removed and its group killed however the conversion ends."""

import contextlib
import os
import resource
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

FOLDER_PREFIX = "batch_pipeline-conversion-"
GROUP_FILE = "process-group"


def start_worker(memory_mb: int) -> None:
    """pebble's initializer, in each new worker process."""
    os.setpgrp()
    from batch_pipeline.conversion.office import _converters

    _converters()  # markitdown's import takes about a second: not inside the first file's time limit
    # Set after the imports, so a limit below what they map fails conversions (naming the
    # setting) instead of every worker at start. Tesseract inherits it.
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@contextlib.contextmanager
def private_tempdir(folder: str | None) -> Iterator[None]:
    """In the worker, during one conversion: temporary files (pytesseract's, Tesseract's) go into
    folder, made here for this user alone, which also records the worker's process group for the
    parent to kill if the conversion does not end normally. None: the system's temporary folder."""
    if folder is None:
        yield
        return
    os.mkdir(folder, 0o700)
    if os.getpgrp() == os.getpid():  # leading its own group, never the parent's
        Path(folder, GROUP_FILE).write_text(str(os.getpid()))
    saved = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = os.environ["TMPDIR"] = folder
    try:
        yield
    finally:
        tempfile.tempdir = saved[0]
        if saved[1] is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = saved[1]


def clean_up(folder: str, ended_normally: bool) -> None:
    """In the parent, once a conversion has ended: unless it ended normally (its worker then lives
    on), kill what is left of its worker's process group; remove its folder."""
    if not ended_normally:
        _kill_group(folder)
    shutil.rmtree(folder, ignore_errors=True)


def _kill_group(folder: str) -> None:
    try:
        group = int(Path(folder, GROUP_FILE).read_text())
    except (OSError, ValueError):
        return  # not started: nothing of it runs
    # Its leader, the worker, has been reaped (pebble joins a worker it stops or finds dead). While
    # the group has members, its number is no process's pid; a process with that pid means the
    # group is empty and the number reused: not ours to kill.
    if _exists(group):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True
