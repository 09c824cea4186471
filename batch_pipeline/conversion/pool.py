"""Conversions in worker processes (pebble): every core converts, and a file past the time limit
is stopped for sure (the converters are C code that no signal interrupts: its worker is killed)."""

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Future, TimeoutError

import pebble

from batch_pipeline.conversion.formats import convert
from batch_pipeline.conversion.limits import Conversion, ConversionFailed, ConversionLimits, TooManyPages
from batch_pipeline.outcome import DocumentStatus


def convert_in_worker(data: bytes, suffix: str, limits: ConversionLimits) -> Conversion:
    try:
        text, converter = convert(data, suffix, limits)
    except TooManyPages as e:
        return Conversion(None, None, DocumentStatus.too_large, str(e))
    except ConversionFailed as e:
        return Conversion(None, None, DocumentStatus.conversion_failed, str(e))
    except Exception as e:  # a converter's bug on one file must not sink the batch
        return Conversion(
            None, None, DocumentStatus.conversion_failed, f"the converter failed: {type(e).__name__}: {e}"
        )
    return Conversion(text, converter)


def _warm_up() -> None:
    from batch_pipeline.conversion.office import _converters

    _converters()  # markitdown's import takes about a second: not inside the first file's time limit


def _outcome(future: Future, limits: ConversionLimits) -> Conversion:
    try:
        return future.result()
    except TimeoutError:
        reason = f"conversion took longer than {limits.timeout_seconds:g} s (conversion_timeout_seconds); stopped"
    except pebble.ProcessExpired as e:
        reason = f"the converter's process died (exit code {e.exitcode}): the file may be malformed or too large"
    return Conversion(None, None, DocumentStatus.conversion_failed, reason)


def convert_files(files: Sequence[tuple[bytes, str]], limits: ConversionLimits) -> list[Conversion]:
    """One Conversion per (bytes, suffix), in order; every failure is one file's alone."""
    if not files:
        return []
    workers = min(limits.processes or os.cpu_count() or 1, len(files))
    # spawn: a fork of a process running Dagster's threads is not safe.
    pool = pebble.ProcessPool(workers, initializer=_warm_up, context=multiprocessing.get_context("spawn"))
    try:
        futures = [pool.schedule(convert_in_worker, (data, suffix, limits), timeout=limits.timeout_seconds)
                   for data, suffix in files]  # fmt: skip
        conversions = [_outcome(future, limits) for future in futures]
    except BaseException:
        pool.stop()
        raise
    finally:
        pool.close()
        pool.join()
    return conversions
