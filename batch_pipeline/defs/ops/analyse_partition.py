"""analyse_partition: one mapped step per partition, documents analysed concurrently inside it."""

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

import dagster as dg

from batch_pipeline.batch import partition_analysis
from batch_pipeline.batch.partitions import Partition, PartitionSummary
from batch_pipeline.defs.process import freeze_loaded_objects
from batch_pipeline.defs.resources import DocumentStoreResource, LlmResource, OfflineAnalysisResource
from batch_pipeline.defs.tags import STOPPED_TAG
from batch_pipeline.outcome import DocumentStatus, LlmApi
from batch_pipeline.store import DocumentStore

ANALYSIS_RETRY_POLICY = dg.RetryPolicy(
    max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


# Pool "llm": the instance's pool limit caps how many partitions are analysed at once across runs.
@dg.op(retry_policy=ANALYSIS_RETRY_POLICY, pool="llm", tags={"kind": "analysis"})
async def analyse_partition(
    context: dg.OpExecutionContext,
    partition: Partition,
    document_store: DocumentStoreResource,
    llm: LlmResource,
    offline: OfflineAnalysisResource,
) -> PartitionSummary:
    """Analyse one partition's documents concurrently; every result is stored as soon as it is known."""
    freeze_loaded_objects()
    store = document_store.store
    if STOPPED_TAG in context.instance.get_run_by_id(context.run_id).tags:
        raise dg.Failure("not started: the run was stopped by a signal", allow_retries=False)
    stopping = asyncio.Event()
    # A Batch API partition has nothing to drain: its batch goes on at the provider, and resume collects it.
    drains = partition.llm_api is not LlmApi.batch
    try:
        with _stopped_by_signals(asyncio.current_task(), stopping, drains, context.log.warning):
            summary = await _analyse(context, partition, store, llm, offline, stopping)
    except asyncio.CancelledError:
        stopping.set()
    if stopping.is_set():
        # Dagster retries an interrupted step that has a RetryPolicy, and goes on with the next
        # steps: a stop would not stop. So the signal stops the analysis here, what did not
        # finish is marked, and this and every later partition fail for good.
        raise _stopped(context, store) from None
    analysed = summary.documents - summary.cached - summary.skipped_already_done
    context.log.info(
        f"partition {summary.index}: {summary.documents} documents, {summary.cached} from cache, "
        f"{summary.skipped_already_done} already done, {analysed} analysed in {summary.seconds:.2f}s "
        f"({analysed / max(summary.seconds, 1e-9):.1f} docs/s); statuses {summary.status_counts}"
    )
    context.add_output_metadata({"documents": summary.documents, "cached": summary.cached, **summary.status_counts})
    return summary


def _stopped(context: dg.OpExecutionContext, store: DocumentStore) -> dg.Failure:
    context.instance.add_run_tags(context.run_id, {STOPPED_TAG: "true"})
    note = f"the run was stopped by a signal before this document was analysed; resume run {context.run_id}"
    store.mark_interrupted(context.run_id, note)
    unfinished = store.status_counts(context.run_id).get(DocumentStatus.interrupted, 0)
    return dg.Failure(
        f"Stopped by a signal: the answers already paid for are stored, {unfinished} unfinished documents are "
        f"marked interrupted; finish the batch with `batch-pipeline resume {context.run_id}`",
        allow_retries=False,
    )


@contextlib.contextmanager
def _stopped_by_signals(
    task: asyncio.Task | None, stopping: asyncio.Event, drains: bool, log: Callable[[str], None]
) -> Iterator[None]:
    """While the analysis runs, SIGINT/SIGTERM stop it: the first sets stopping (nothing new is sent,
    the answers in flight are awaited), a second one, or the first when it does not drain, cancels
    it. Dagster's own handlers are put back afterwards."""
    loop = asyncio.get_running_loop()
    if task is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop() -> None:
        if not drains or stopping.is_set():
            task.cancel()
            return
        stopping.set()
        log("Stopping: nothing new is sent, the answers in flight are awaited (a second signal stops at once)")

    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop)
    try:
        yield
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
            signal.signal(sig, previous[sig])


async def _analyse(
    context: dg.OpExecutionContext,
    partition: Partition,
    store: DocumentStore,
    llm: LlmResource,
    offline: OfflineAnalysisResource,
    stopping: asyncio.Event,
) -> PartitionSummary:
    offline_analyser, provider = offline.analyser, llm.provider
    result = await partition_analysis.analyse(
        store, context.run_id, partition, offline_analyser, provider, context.log.info, stopping
    )
    if result.limits is None:
        return result.summary
    if result.format_rejected:
        context.log.warning(
            f"{partition.context.ai_model} no longer takes response format {partition.response_format.value}: "
            "the next run probes again"
        )
    context.log.info(
        f"partition {partition.index}: paced to {result.limits.describe()} ({result.limits.source}); "
        f"{result.pauses} rate-limit pauses"
    )
    if kept_back := result.summary.status_counts.get(DocumentStatus.pace_state_unavailable):
        # No retry: the step's retry would find nothing pending. The run fails, and resume finishes it.
        raise dg.Failure(
            f"{result.pace_state_failure}: {kept_back} documents of partition {partition.index} were not sent "
            f"({DocumentStatus.pace_state_unavailable.value}); once it answers, finish the batch with "
            f"`batch-pipeline resume {context.run_id}`",
            allow_retries=False,
        )
    return result.summary
