"""document_batch_job: document records → partitioned analysis → aggregation."""

import dagster as dg

from batch_pipeline.defs.executor import batch_executor
from batch_pipeline.defs.ops import aggregate, analyze_partition, create_document_records


@dg.job(
    # In-process unless the run asks for more: analysis concurrency comes from asyncio and worker
    # processes inside each partition, and a process per step costs about a second each
    # (docs/benchmarks.md). Celery workers are for more cores or hosts than one run's process has.
    executor_def=batch_executor,
    description="Register a batch of markdown/text documents, analyse them in partitions under the run's "
    "ProcessingContext, and aggregate the results into a report.",
)
def document_batch_job():
    batch, partitions = create_document_records()
    summaries = partitions.map(analyze_partition)
    aggregate(batch, summaries.collect())
