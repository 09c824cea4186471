"""Conversions in worker processes (pebble): every core converts, and a file past the time limit
is stopped for sure (the converters are C code that no signal interrupts: its worker is killed)."""

import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import Future, TimeoutError, as_completed

import pebble

from batch_pipeline.conversion import isolation
from batch_pipeline.conversion.formats import convert
from batch_pipeline.conversion.limits import Conversion, ConversionFailed, ConversionLimits, TooManyPages
from batch_pipeline.outcome import DocumentStatus

# libxml2 (lxml) reports a failed allocation as a parse error.
LIBXML2_OUT_OF_MEMORY = "Memory allocation failed"


def convert_in_worker(data: bytes, suffix: str, limits: ConversionLimits, folder: str | None = None) -> Conversion:
    """folder: a new private folder for its temporary files (None: the system's)."""
    with isolation.private_tempdir(folder):
        try:
            text, converter = convert(data, suffix, limits)
        except Exception as e:  # a converter's bug on one file must not sink the batch
            return _failure(e, limits)
    return Conversion(text, converter)


def _failure(error: Exception, limits: ConversionLimits) -> Conversion:
    if _out_of_memory(error):
        return Conversion(None, None, DocumentStatus.too_large, limits.over_memory())
    if isinstance(error, TooManyPages):
        return Conversion(None, None, DocumentStatus.too_large, str(error))
    if isinstance(error, ConversionFailed):
        return Conversion(None, None, DocumentStatus.conversion_failed, str(error))
    reason = f"the converter failed: {type(error).__name__}: {error}"
    return Conversion(None, None, DocumentStatus.conversion_failed, reason)


def _out_of_memory(error: BaseException | None) -> bool:
    """Whether error is, or was raised while handling, a failed allocation (converters that clean
    up after a MemoryError often fail again, with another error)."""
    while error is not None:
        if isinstance(error, MemoryError) or LIBXML2_OUT_OF_MEMORY in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def _outcome(future: Future, limits: ConversionLimits) -> Conversion:
    try:
        return future.result()
    except TimeoutError:
        reason = f"conversion took longer than {limits.timeout_seconds:g} s (conversion_timeout_seconds); stopped"
    except pebble.ProcessExpired as e:
        reason = (
            f"the converter's process died (exit code {e.exitcode}): the file may be malformed, or "
            f"{limits.over_memory()}"
        )
    return Conversion(None, None, DocumentStatus.conversion_failed, reason)


def convert_files(files: Sequence[tuple[bytes, str]], limits: ConversionLimits) -> list[Conversion]:
    """One Conversion per (bytes, suffix), in order; every failure is one file's alone."""
    if not files:
        return []
    workers = min(limits.processes or os.cpu_count() or 1, len(files))
    # spawn: a fork of a process running Dagster's threads is not safe.
    pool = pebble.ProcessPool(
        workers,
        initializer=isolation.start_worker,
        initargs=(limits.memory_mb,),
        context=multiprocessing.get_context("spawn"),
    )
    root = tempfile.mkdtemp(prefix=isolation.FOLDER_PREFIX)
    folders = [os.path.join(root, str(i)) for i in range(len(files))]
    try:
        futures = {
            pool.schedule(convert_in_worker, (data, suffix, limits, folder), timeout=limits.timeout_seconds): i
            for i, ((data, suffix), folder) in enumerate(zip(files, folders, strict=True))
        }
        conversions = {}
        for future in as_completed(futures):  # each cleaned up as soon as it ends
            i = futures[future]
            conversions[i] = _outcome(future, limits)
            isolation.clean_up(folders[i], ended_normally=future.exception() is None)
        pool.close()
    except BaseException:
        pool.stop()
        raise
    finally:
        pool.join()
        for folder in folders:  # those of a stopped batch; the others are gone already
            isolation.clean_up(folder, ended_normally=False)
        shutil.rmtree(root, ignore_errors=True)
    return [conversions[i] for i in range(len(files))]
