"""analyze_partition: one mapped step per partition, documents analysed concurrently inside it."""

import dagster as dg

from batch_pipeline.batch.partitions import Partition, PartitionSummary
from batch_pipeline.batch.runner import NothingToSend, OfflineAnalyser, analyze_documents
from batch_pipeline.defs.resources import DocumentStoreResource, LlmResource

ANALYSIS_RETRY_POLICY = dg.RetryPolicy(
    max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


# Pool "llm": the instance's pool limit caps how many partitions are analysed at once across runs.
@dg.op(retry_policy=ANALYSIS_RETRY_POLICY, pool="llm", tags={"kind": "analysis"})
async def analyze_partition(
    context: dg.OpExecutionContext, partition: Partition, document_store: DocumentStoreResource, llm: LlmResource
) -> PartitionSummary:
    """Analyse one partition's documents concurrently; every result is stored as soon as it is known."""
    store = document_store.store
    if partition.context.is_local:
        summary = await analyze_documents(store, context.run_id, partition, OfflineAnalyser(), context.log.info)
    elif partition.response_format is None:
        summary = await analyze_documents(store, context.run_id, partition, NothingToSend(), context.log.info)
    else:
        analyser = llm.provider().analyser(partition.response_format)
        try:
            summary = await analyze_documents(store, context.run_id, partition, analyser, context.log.info)
        finally:
            await analyser.close()
        context.log.info(f"partition {summary.index}: {analyser.gate.pauses} rate-limit pauses")
    analysed = summary.documents - summary.cached - summary.skipped_already_done
    context.log.info(
        f"partition {summary.index}: {summary.documents} documents, {summary.cached} from cache, "
        f"{summary.skipped_already_done} already done, {analysed} analysed in {summary.seconds:.2f}s "
        f"({analysed / max(summary.seconds, 1e-9):.1f} docs/s); statuses {summary.status_counts}"
    )
    context.add_output_metadata({"documents": summary.documents, "cached": summary.cached, **summary.status_counts})
    return summary
