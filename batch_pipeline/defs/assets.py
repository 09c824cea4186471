"""The analysed batch as an asset: one partition per project, materialized by every run of
document_batch_job and by Materialize on its own page (the graph-backed asset in job.py), so its
page shows which run produced a project's latest results, under which context, with what outcome,
how its checks ended, and plots the numbers across runs."""

import warnings

import dagster as dg
import sqlalchemy as sa

from batch_pipeline.outcome import FAILURE_RATE_CHECK, LABELLED_SCORE_CHECK

PROJECTS = dg.DynamicPartitionsDefinition(name="batch_pipeline_projects")
ANALYSED_DOCUMENTS = dg.AssetKey(["batch_pipeline", "analysed_documents"])
# The graph-backed asset's node: Materialize's run config holds the batch's settings under it.
ASSET_NODE = ANALYSED_DOCUMENTS.to_python_identifier()
DESCRIPTION = (
    "The documents of a project analysed under one run's ProcessingContext: each materialization is one run "
    "(partition = project), with its context, counts, failures, throughput, latency, tokens, cost, check outcomes "
    "and the run's report; metrics named '<metric> · <ai_model>' plot each model's runs apart. Materialize runs "
    "the pipeline with the run config's project equal to the partition."
)

# Blocking at ERROR severity: a failed check fails the run once its results and report are stored.
# Per project (partition), so one project's outcome never stands for another's: partitioned checks
# are a preview in Dagster 1.13 (pinned to 1.13.* in pyproject; the tests hold the behaviour).
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.PreviewWarning)
    CHECK_SPECS = [
        dg.AssetCheckSpec(
            FAILURE_RATE_CHECK,
            asset=ANALYSED_DOCUMENTS,
            blocking=True,
            partitions_def=PROJECTS,
            description="The share of the run's documents that failed, at most checks.max_failure_rate "
            "(else $BATCH_PIPELINE_MAX_FAILURE_RATE; with neither, measured only).",
        ),
        dg.AssetCheckSpec(
            LABELLED_SCORE_CHECK,
            asset=ANALYSED_DOCUMENTS,
            blocking=True,
            partitions_def=PROJECTS,
            description="Where the run names labelled answers (checks.labels): its overall score on them, at least "
            "checks.min_score (else $BATCH_PIPELINE_MIN_SCORE; with neither, measured only).",
        ),
    ]
# The names the graph-backed asset's check outputs take (Dagster derives them from the specs).
CHECK_OUTPUTS = [spec.get_python_identifier() for spec in CHECK_SPECS]


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
