"""The offline analysers in worker processes (pebble): one document can neither stall a run (a
worker past the time limit is killed and replaced) nor keep it from hearing SIGINT/SIGTERM (the
run's own process only waits), and every core is used."""

import asyncio
import multiprocessing
import os
import time
from concurrent.futures import Future

import pebble

from batch_pipeline import settings
from batch_pipeline.analysis.detectors.phones import REGIONS_ENV
from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.analysis.stored_result import stored_json
from batch_pipeline.context import PinnedContext
from batch_pipeline.outcome import AnalysisOutcome, DocumentStatus

# What a worker reads from the environment it started with: a pool serves runs that agree on these.
WORKER_ENVIRONMENT = (settings.MAX_FINDINGS_ENV, REGIONS_ENV)


def analysis_reference(context: PinnedContext) -> str:
    """What a worker is told to run: the key and the digest of the definition the run was pinned to."""
    return f"{context.model_key}@{context.definition.digest}"


def analyse_in_worker(reference: str, text: str) -> tuple[DocumentStatus, str, float]:
    """(status, result JSON or error, seconds), run in a worker process."""
    started = time.perf_counter()
    model_key, _, digest = reference.partition("@")
    try:
        analysis = catalogue().get(model_key)
        if analysis.digest != digest:
            raise ValueError(
                f"this worker's definition of {model_key!r} ({analysis.definition.origin}) is not the one the run was "
                "launched with: the installation changed since; resume the run where both agree"
            )
        result = stored_json(analysis.analyse_offline(text), settings.max_findings())
    except Exception as e:  # an analyser bug on one document must not sink the batch
        return DocumentStatus.analysis_error, f"{type(e).__name__}: {e}", time.perf_counter() - started
    return DocumentStatus.ok, result, time.perf_counter() - started


def warm_up_worker() -> None:
    """Runs once in each new worker: the analysers load their libraries here, not inside the first
    document's time limit."""
    for analysis in catalogue().analyses.values():
        if analysis.offline is not None:
            analysis.analyse_offline("Warm-up: mail a@example.com, call +1 415 555 0100.")


def analyse_chunk_in_worker(items: list[tuple[str, str]]) -> list[tuple[DocumentStatus, str, float]]:
    return [analyse_in_worker(reference, text) for reference, text in items]


class OfflineWorkers:
    """A pool of worker processes, started on first use and stopped by close()."""

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1
        self._pool: pebble.ProcessPool | None = None

    def submit(self, items: list[tuple[str, str]], timeout_seconds: float) -> Future:
        """Analyse (analysis_reference, text) items in one worker; the future's result lists their outcomes."""
        if self._pool is None:
            # spawn: a fork of a process running Dagster's threads and an event loop is not safe.
            context = multiprocessing.get_context("spawn")
            self._pool = pebble.ProcessPool(max_workers=self.workers, context=context, initializer=warm_up_worker)
        return self._pool.schedule(analyse_chunk_in_worker, args=(items,), timeout=timeout_seconds)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.stop()  # kills documents still running: their rows stay unfinished
            self._pool.join()
            self._pool = None


# Documents go to the workers in chunks: one task per document cost more in messages than the
# analysis of a small one. A chunk gets one document's time limit; a chunk that overruns it is
# split, and each of its documents gets the limit on its own.
CHUNK_DOCUMENTS = 32
CHUNK_CHARACTERS = 64_000

Item = tuple[str, str, asyncio.Future]  # analysis_reference, text, where its outcome goes


class OfflineAnalyser:
    """The registry's offline analysers (``ai_model: local``), in worker processes."""

    def __init__(self, workers: OfflineWorkers, timeout_seconds: float):
        self.workers = workers
        self.timeout_seconds = timeout_seconds
        self.max_concurrency = workers.workers * CHUNK_DOCUMENTS * 2  # a chunk running and one waiting, per worker
        self._waiting: list[Item] = []
        self._characters = 0
        self._chunks: set[asyncio.Task] = set()

    async def analyse(self, text: str, context: PinnedContext, earlier_answer: str | None = None) -> AnalysisOutcome:
        """(earlier_answer: never given; the offline analysers are never stopped mid-repair.)"""
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future = loop.create_future()
        if len(text) >= CHUNK_CHARACTERS:
            self._start([(analysis_reference(context), text, outcome)])
        else:
            if not self._waiting:
                loop.call_soon(self._flush)  # after the documents already on their way join this chunk
            self._waiting.append((analysis_reference(context), text, outcome))
            self._characters += len(text)
            if len(self._waiting) >= CHUNK_DOCUMENTS or self._characters >= CHUNK_CHARACTERS:
                self._flush()
        return await outcome

    def _flush(self) -> None:
        if self._waiting:
            self._start(self._waiting)
            self._waiting, self._characters = [], 0

    def _start(self, chunk: list[Item]) -> None:
        task = asyncio.ensure_future(self._run(chunk))
        self._chunks.add(task)
        task.add_done_callback(self._chunks.discard)

    async def _run(self, chunk: list[Item]) -> None:
        items = [(reference, text) for reference, text, _ in chunk]
        try:
            results = await asyncio.wrap_future(self.workers.submit(items, self.timeout_seconds))
        except (TimeoutError, pebble.ProcessExpired) as e:
            if len(chunk) > 1:
                for item in chunk:
                    self._start([item])
                return
            results = [e]
        except Exception as e:  # the pool itself failed: the partition fails, instead of waiting forever
            for _, _, outcome in chunk:
                if not outcome.done():
                    outcome.set_exception(e)
            return
        for (_, _, outcome), result in zip(chunk, results, strict=True):
            if not outcome.done():
                outcome.set_result(self._outcome(result))

    def _outcome(self, result: tuple[DocumentStatus, str, float] | BaseException) -> AnalysisOutcome:
        if isinstance(result, TimeoutError):
            error = f"analysis took longer than {self.timeout_seconds:g} s (analysis_timeout_seconds); stopped"
            return AnalysisOutcome(status=DocumentStatus.analysis_timeout, error=error, attempts=1)
        if isinstance(result, BaseException):  # the worker died (killed, out of memory)
            return AnalysisOutcome(
                status=DocumentStatus.analysis_error, error=f"the worker process died: {result}", attempts=1
            )
        status, output, seconds = result
        if status is not DocumentStatus.ok:
            return AnalysisOutcome(status=status, error=output, attempts=1)
        return AnalysisOutcome(
            status=status, result=output, attempts=1, latency_ms=seconds * 1000, answered_by_model="local"
        )
