"""The offline analysers in worker processes (pebble): one document can neither stall a run (a
worker past the time limit is killed and replaced) nor keep it from hearing SIGINT/SIGTERM (the
run's own process only waits), and every core is used."""

import asyncio
import multiprocessing
import os
import time
from concurrent.futures import Future

import pebble

from batch_pipeline.analysis import REGISTRY
from batch_pipeline.context import ProcessingContext
from batch_pipeline.outcome import AnalysisOutcome, DocumentStatus


def analyse_in_worker(model_key: str, text: str) -> tuple[DocumentStatus, str, float]:
    """(status, result JSON or error, seconds), run in a worker process."""
    started = time.perf_counter()
    try:
        result = REGISTRY[model_key].analyse_offline(text).model_dump_json()
    except Exception as e:  # an analyser bug on one document must not sink the batch
        return DocumentStatus.analysis_error, f"{type(e).__name__}: {e}", time.perf_counter() - started
    return DocumentStatus.ok, result, time.perf_counter() - started


class OfflineWorkers:
    """A pool of worker processes, started on first use and stopped by close()."""

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1
        self._pool: pebble.ProcessPool | None = None

    def submit(self, model_key: str, text: str, timeout_seconds: float) -> Future:
        if self._pool is None:
            # spawn: a fork of a process running Dagster's threads and an event loop is not safe.
            context = multiprocessing.get_context("spawn")
            self._pool = pebble.ProcessPool(max_workers=self.workers, context=context)
        return self._pool.schedule(analyse_in_worker, args=(model_key, text), timeout=timeout_seconds)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.stop()  # kills documents still running: their rows stay unfinished
            self._pool.join()
            self._pool = None


class OfflineAnalyser:
    """The registry's offline analysers (``ai_model: local``), each document in a worker process."""

    def __init__(self, workers: OfflineWorkers, timeout_seconds: float):
        self.workers = workers
        self.timeout_seconds = timeout_seconds
        self.max_concurrency = workers.workers  # one document per worker: none waits in a queue

    async def analyse(self, text: str, context: ProcessingContext) -> AnalysisOutcome:
        future = self.workers.submit(context.model_key.value, text, self.timeout_seconds)
        try:
            status, output, seconds = await asyncio.wrap_future(future)
        except TimeoutError:
            return AnalysisOutcome(
                status=DocumentStatus.analysis_timeout,
                error=f"analysis took longer than {self.timeout_seconds:g} s (analysis_timeout_seconds); stopped",
                attempts=1,
            )
        except pebble.ProcessExpired as e:  # the worker died (killed, out of memory)
            return AnalysisOutcome(
                status=DocumentStatus.analysis_error, error=f"the worker process died: {e}", attempts=1
            )
        if status is not DocumentStatus.ok:
            return AnalysisOutcome(status=status, error=output, attempts=1)
        return AnalysisOutcome(
            status=status, result=output, attempts=1, latency_ms=seconds * 1000, answered_by_model="local"
        )
