"""Finishing a batch whose run died (e.g. its process was SIGKILLed): mark the run failed and run
the same batch again. Finished documents come from the result cache, so nothing is paid twice."""

import os

import dagster as dg

from batch_pipeline.defs.tags import BUDGET_RUN_TAG, PARTITION_TAG, PRIORITY_TAG, RESUMED_FROM_TAG, STOPPED_TAG
from batch_pipeline.store import DocumentStore

IN_PROGRESS = {dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING}
RESUMABLE = IN_PROGRESS | {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


class CannotResume(Exception):
    pass


def _run_pids(instance: dg.DagsterInstance, run_id: str) -> set[int]:
    return {e.dagster_event.pid for e in instance.all_logs(run_id) if e.dagster_event and e.dagster_event.pid}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _resume_tags(run: dg.DagsterRun) -> dict[str, str]:
    kept = {
        k: v
        for k, v in run.tags.items()
        if (not k.startswith(("dagster/", ".dagster")) or k == PRIORITY_TAG) and k != STOPPED_TAG
    }
    # One max_cost_usd for a run and its resumes: each draws on the first run's budget.
    return {**kept, RESUMED_FROM_TAG: run.run_id, BUDGET_RUN_TAG: run.tags.get(BUDGET_RUN_TAG, run.run_id)}


def resume(instance: dg.DagsterInstance, store: DocumentStore, run_id: str) -> dg.JobExecutionResult:
    """Mark a dead run failed, then execute the same batch (run config and tags) as a new run."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise CannotResume(f"No run {run_id} in the Dagster instance at {os.environ.get('DAGSTER_HOME')}")
    if run.status not in RESUMABLE:
        raise CannotResume(f"Run {run_id} is {run.status.value}: only a failed, canceled or dead run is resumed")
    # Materialize on analysed_documents' page runs an asset job for one project's partition.
    materializing = run.job_name in ("__ASSET_JOB", "analysed_documents_job")
    if run.job_name != "document_batch_job" and not (materializing and PARTITION_TAG in run.tags):
        raise CannotResume(f"Run {run_id} is a run of {run.job_name}, not a batch: launch it again instead")
    if run.status in IN_PROGRESS:
        if live := sorted(pid for pid in _run_pids(instance, run_id) if _alive(pid)):
            raise CannotResume(f"Run {run_id} is still running (pid {live[0]}); cancel it first")
        instance.report_run_failed(run, message="Marked failed by `batch-pipeline resume`: its process is gone.")
    result = dg.execute_job(
        dg.build_reconstructable_job(
            "batch_pipeline.definitions",
            "resolve_analysed_documents_job" if materializing else "resolve_document_batch_job",
        ),
        instance=instance,
        run_config=run.run_config,
        tags={**_resume_tags(run), **({PARTITION_TAG: run.tags[PARTITION_TAG]} if materializing else {})},
    )
    store.mark_interrupted(run_id, f"the run died; resumed as run {result.run_id}")
    return result
