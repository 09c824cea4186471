"""The analysed batch as an asset: one partition per project, materialized by every run of
document_batch_job, so its page shows which run produced a project's latest results, under
which context, with what outcome, and plots the numbers across runs."""

import dagster as dg
import sqlalchemy as sa

PROJECTS = dg.DynamicPartitionsDefinition(name="batch_pipeline_projects")

analysed_documents = dg.AssetSpec(
    key=dg.AssetKey(["batch_pipeline", "analysed_documents"]),
    description="The documents of a project analysed under one run's ProcessingContext: each materialization "
    "is one run of document_batch_job (partition = project), with its context, counts, failures, throughput, "
    "latency, tokens and cost, and the run's report.",
    partitions_def=PROJECTS,
    group_name="batch_pipeline",
    kinds={"python"},
    metadata={"launched_by": "document_batch_job (run config: project, source, context)"},
)


def record_project(instance: dg.DagsterInstance, project: str) -> None:
    """The project's partition exists before its first materialization. Dagster's SQLite storage
    looks for the key and then inserts it: two first launches of a project at once can both look,
    and the second insert then breaks the unique key, though the partition is there as wanted."""
    if instance.has_dynamic_partition(PROJECTS.name, project):
        return
    try:
        instance.add_dynamic_partitions(PROJECTS.name, [project])
    except sa.exc.IntegrityError:
        if not instance.has_dynamic_partition(PROJECTS.name, project):
            raise
