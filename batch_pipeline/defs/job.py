"""document_batch_job: document records → partitioned analysis → aggregation."""

import dagster as dg

from batch_pipeline.defs.ops import aggregate, analyze_partition, create_document_records


@dg.job(
    # Steps share one process: analysis concurrency comes from asyncio inside each partition,
    # and a process per step would cost about a second each (see docs/benchmarks.md).
    executor_def=dg.in_process_executor,
    description="Register a batch of markdown/text documents, analyse them in partitions under the run's "
    "ProcessingContext, and aggregate the results into a report.",
)
def document_batch_job():
    batch, partitions = create_document_records()
    summaries = partitions.map(analyze_partition)
    aggregate(batch, summaries.collect())
