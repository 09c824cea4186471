"""The executor is chosen per run: in-process unless run config asks for multiprocess or celery."""

import dagster as dg
import pytest
import yaml

from batch_pipeline import settings
from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.context import ProcessingContext
from batch_pipeline.definitions import defs
from batch_pipeline.defs.config import batch_run_config
from batch_pipeline.defs.executor import CELERY_POLL_SECONDS, celery_executor_config, runs_steps_in_its_own_process
from batch_pipeline.defs.tags import run_tags
from batch_pipeline.store import DocumentStore
from batch_pipeline_tests.conftest import batch_config, dagster_execute, write_corpus


def test_celery_config_comes_from_the_deployment_and_the_run_names_only_its_queue(monkeypatch):
    monkeypatch.setenv("BATCH_PIPELINE_CELERY_BROKER", "pyamqp://app:pw@rabbit.internal//")
    monkeypatch.setenv("BATCH_PIPELINE_CELERY_BACKEND", "redis://cache.internal:6379/3")
    config = celery_executor_config({})
    assert config["broker"] == "pyamqp://app:pw@rabbit.internal//"
    assert config["backend"] == "redis://cache.internal:6379/3"
    source = config["config_source"]
    assert source["task_default_queue"] == "dagster"
    assert source["task_acks_late"] and source["task_reject_on_worker_lost"]
    assert source["worker_prefetch_multiplier"] == 1 and source["task_queue_max_priority"] == 10

    named = celery_executor_config({"queue": "eu"})
    assert named["broker"] == "pyamqp://app:pw@rabbit.internal//"
    assert named["config_source"]["task_default_queue"] == "eu"


@pytest.mark.parametrize(
    ("execution", "whole_run"),
    [(None, True), ({"config": {"in_process": {}}}, True), ({"config": {"multiprocess": {}}}, False),
     ({"config": {"celery": {}}}, False)],
)  # fmt: skip
def test_resources_live_as_long_as_the_run_only_in_process(execution, whole_run):
    run_config = {"ops": {}} if execution is None else {"execution": execution}
    assert runs_steps_in_its_own_process(run_config) is whole_run


def test_launchpad_offers_the_three_executors_with_in_process_by_default():
    job = defs.resolve_job_def("document_batch_job")
    field = job.executor_def.config_schema.as_field()
    assert set(field.config_type.fields) == {"in_process", "multiprocess", "celery"}
    assert field.default_value == {"in_process": {}}


def test_triggered_runs_take_the_deployments_executor(monkeypatch):
    context = ProcessingContext(model_key="content_compliance", ai_model="local").pinned(catalogue())
    assert "execution" not in batch_run_config("p", "/in", context, settings.triggered_run_executor())
    monkeypatch.setenv("BATCH_PIPELINE_EXECUTOR", "celery")
    assert batch_run_config("p", "/in", context, settings.triggered_run_executor())["execution"] == {
        "config": {"celery": {}}
    }
    monkeypatch.setenv("BATCH_PIPELINE_EXECUTOR", "dask")
    with pytest.raises(settings.NotAllowed, match="in_process, multiprocess, celery"):
        settings.triggered_run_executor()


def test_run_priority_orders_the_run_queue_and_the_broker():
    tags = run_tags(ProcessingContext(model_key="content_compliance", ai_model="local").pinned(catalogue()), "high")
    assert tags["dagster/priority"] == "10" and tags["dagster-celery/run_priority"] == "4"


def test_multiprocess_run_analyses_every_document_once_in_step_processes(tmp_path, shared_store_env):
    corpus = write_corpus(tmp_path / "corpus", 12)
    run_config = {
        **batch_config(str(corpus), project="multiprocess", partition_size=4),
        "execution": {"config": {"multiprocess": {"max_concurrent": 2}}},
    }
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(run_config))
    process = dagster_execute(config_path, tmp_path / "home", shared_store_env)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        (run,) = instance.get_runs()
        pids = {e.dagster_event.pid for e in instance.all_logs(run.run_id) if e.dagster_event and e.dagster_event.event_type_value == "STEP_START"}  # fmt: skip
    assert len(pids) == 5  # records, three partitions, aggregate: a process each
    store = DocumentStore(shared_store_env["BATCH_PIPELINE_DATABASE_URL"])
    assert store.status_counts(run.run_id) == {"ok": 12}
    store.close()


def test_a_celery_run_looks_for_finished_steps_ten_times_a_second(monkeypatch):
    from dagster_celery import core_execution_loop

    monkeypatch.setattr(core_execution_loop, "TICK_SECONDS", 1)  # dagster-celery's own, restored after the test
    job = defs.resolve_job_def("document_batch_job")
    with dg.DagsterInstance.ephemeral() as instance:
        executor = job.executor_def.executor_creation_fn(
            dg.InitExecutorContext(
                job=dg.reconstructable(_document_batch_job),  # as dagster job execute gives it
                executor_def=job.executor_def,
                executor_config={"celery": {}},
                instance=instance,
            )
        )
    assert type(executor).__name__ == "CeleryExecutor"
    assert core_execution_loop.TICK_SECONDS == CELERY_POLL_SECONDS == 0.1
    # and dagster-celery's loop still reads it (a rename upstream would make the setting a silent no-op)
    assert "TICK_SECONDS" in core_execution_loop.core_celery_execution_loop.__code__.co_names


def _document_batch_job() -> dg.JobDefinition:
    return defs.resolve_job_def("document_batch_job")
