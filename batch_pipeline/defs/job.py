"""document_batch_job: document records → partitioned analysis → aggregation."""

import dagster as dg

from batch_pipeline.defs.executor import batch_executor
from batch_pipeline.defs.launch_schema import launchable
from batch_pipeline.defs.ops import aggregate, analyse_partition, create_document_records
from batch_pipeline.defs.resources import (
    DocumentStoreResource,
    LlmResource,
    OfflineAnalysisResource,
    StepOutputsIOManager,
)


@dg.graph
def document_batch():
    batch, partitions = create_document_records()
    summaries = partitions.map(analyse_partition)
    aggregate(batch, summaries.collect())


document_batch_job = launchable(
    document_batch,
    name="document_batch_job",
    description="Register a batch of documents (text, PDF, Office, e-mail, scans), analyse them in partitions "
    "under the run's ProcessingContext, and aggregate the results into a report.",
    # In-process unless the run asks for more: analysis concurrency comes from asyncio and worker
    # processes inside each partition, and a process per step costs about a second each
    # (docs/benchmarks.md). Celery workers are for more cores or hosts than one run's process has.
    executor_def=batch_executor,
    resource_defs={
        "document_store": DocumentStoreResource(),
        "llm": LlmResource(),
        "offline": OfflineAnalysisResource(),
        "io_manager": StepOutputsIOManager(),
    },
)
