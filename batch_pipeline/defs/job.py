"""document_batch_job: document records → partitioned analysis → aggregation; and the same ops as
the graph-backed asset analysed_documents, which its page's Materialize launches."""

import dagster as dg

from batch_pipeline.defs.assets import ANALYSED_DOCUMENTS, CHECK_OUTPUTS, CHECK_SPECS, DESCRIPTION, PROJECTS
from batch_pipeline.defs.config import BATCH_OP, BatchConfig
from batch_pipeline.defs.executor import batch_executor
from batch_pipeline.defs.launch_schema import launch_safe, launchable, without_environment
from batch_pipeline.defs.ops import aggregate, analyse_partition, conclude_analysed_documents, create_document_records
from batch_pipeline.defs.resources import (
    DocumentStoreResource,
    LlmResource,
    OfflineAnalysisResource,
    StepOutputsIOManager,
)

RESOURCES = {
    "document_store": DocumentStoreResource(),
    "llm": LlmResource(),
    "offline": OfflineAnalysisResource(),
    "io_manager": StepOutputsIOManager(),
}


# The asset's, given to the code location: the job's, their config schemas without {env: ...} (the
# asset job is Dagster's own: no ConfigMapping wraps its schema). The IO manager takes no config.
ASSET_RESOURCES = {key: launch_safe(resource) for key, resource in RESOURCES.items() if key != "io_manager"} | {
    "io_manager": RESOURCES["io_manager"]
}


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
    resource_defs=RESOURCES,
)


@dg.graph_asset(
    key=ANALYSED_DOCUMENTS,
    description=DESCRIPTION,
    partitions_def=PROJECTS,
    group_name="batch_pipeline",
    kinds={"python"},
    check_specs=CHECK_SPECS,
    # The asset's config is create_document_records' (the job's, one level up), without {env: ...}.
    config=dg.ConfigMapping(
        config_fn=lambda config: {BATCH_OP: {"config": config}},
        config_schema=without_environment(BatchConfig.to_config_schema().as_field().config_type),
    ),
)
def analysed_documents():
    batch, partitions = create_document_records()
    summaries = partitions.map(analyse_partition)
    concluded = conclude_analysed_documents(batch, summaries.collect())
    return {"result": concluded.result, **{name: getattr(concluded, name) for name in CHECK_OUTPUTS}}


# The asset's job by name (the UI's Materialize uses Dagster's implicit one, with the same config):
# what `batch-pipeline resume` re-executes a Materialize run with.
analysed_documents_job = dg.define_asset_job(
    "analysed_documents_job",
    selection=[ANALYSED_DOCUMENTS],
    description="Materialize analysed_documents (the same pipeline as document_batch_job; config one level up).",
)
