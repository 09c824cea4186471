"""The job on real Celery workers: RabbitMQ as broker, Redis as result backend, Dagster's instance and
the document store on PostgreSQL, workers started with `batch-pipeline worker` as separate process
groups. Each test uses its own queue (deleted afterwards) and Redis database."""

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import yaml

from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.context import ProcessingContext
from batch_pipeline.defs.tags import BROKER_PRIORITIES, BROKER_PRIORITY_TAG, run_tags
from batch_pipeline.store import DocumentStore
from batch_pipeline_tests.conftest import (
    BATCH_PIPELINE,
    REPO_ROOT,
    _make_database,
    batch_config,
    celery_backend_test_url,
    dagster_execute,
    environment_without_settings,
    with_llm,
    write_corpus,
)
from batch_pipeline_tests.dagster_services import postgres_home, webserver_and_daemon
from testbed.fake_openai_server import Behaviour, FakeOpenAIServer

CELERY_WORKER_KEY = "Celery worker"  # dagster-celery's engine event metadata: which worker took a step


@pytest.fixture
def celery_env(broker, redis_url, postgres_server, tmp_path, monkeypatch) -> dict:
    """The environment every process of the deployment shares: runs, workers, daemon, webserver. Its
    own databases: runs left queued or cancelled here must not reach other tests' instances."""
    import kombu

    postgres_store_url, drop_store = _make_database(postgres_server, "celery_store")
    postgres_dagster_url, drop_dagster = _make_database(postgres_server, "celery_dagster")

    queue = f"bp_test_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", postgres_dagster_url)
    home = postgres_home(tmp_path / "home")
    config = yaml.safe_load((home / "dagster.yaml").read_text())
    config["run_monitoring"]["poll_interval_seconds"] = 2
    # A pool slot is claimed when a step is sent to the broker; with more slots than the workers
    # have, steps wait on the broker, where their priority orders them (docs/guide/production.md: Celery workers).
    config["concurrency"]["pools"]["default_limit"] = 50
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    env = environment_without_settings()
    env.update(
        DAGSTER_HOME=str(home),
        DAGSTER_POSTGRES_URL=postgres_dagster_url,
        BATCH_PIPELINE_DATABASE_URL=postgres_store_url,
        BATCH_PIPELINE_REPORTS_DIR=str(tmp_path / "reports"),
        BATCH_PIPELINE_CELERY_BROKER=broker,
        BATCH_PIPELINE_CELERY_BACKEND=celery_backend_test_url(),
        BATCH_PIPELINE_CELERY_QUEUE=queue,
        OPENAI_API_KEY="sk-test-key",
    )
    yield env
    with kombu.Connection(broker) as connection:
        connection.default_channel.queue_delete(queue)
    drop_store()
    drop_dagster()


@dataclass
class Worker:
    name: str
    process: subprocess.Popen
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)


@pytest.fixture
def workers(celery_env, tmp_path):
    """start(name) starts a worker in its own process group and waits until it takes tasks."""
    started: list[Worker] = []

    def start(name: str, env: dict | None = None) -> Worker:
        # Unique on the host: two test processes' workers of one name would fight over its pidbox queue.
        name = f"{name}-{uuid.uuid4().hex[:6]}"
        log = tmp_path / f"worker_{name}.log"
        process = subprocess.Popen(
            [BATCH_PIPELINE, "worker", "--name", name, "--concurrency", "1"],
            cwd=REPO_ROOT, env=env or celery_env, stdout=log.open("w"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        worker = Worker(name, process, log)
        started.append(worker)
        deadline = time.monotonic() + 60
        while " ready." not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        return worker

    yield start
    for worker in started:
        worker.stop()


def execute(env: dict, run_config: dict, path: Path, tags: dict | None = None) -> subprocess.Popen:
    """`dagster job execute` of the job (the CLI process orchestrates; the steps go to the workers)."""
    path.write_text(yaml.safe_dump({**run_config, "execution": {"config": {"celery": {}}}}))
    return dagster_execute(path, Path(env["DAGSTER_HOME"]), env, tags)


def instance_of(env: dict) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(env["DAGSTER_HOME"])


def step_starts(instance: dg.DagsterInstance, run_id: str) -> list[tuple[float, str, str, int]]:
    """(time, step key, worker name, pid) of each step execution a worker began, in order."""
    workers = {}
    starts = []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type_value == "ENGINE_EVENT" and CELERY_WORKER_KEY in event.engine_event_data.metadata:
            workers[entry.step_key] = event.engine_event_data.metadata[CELERY_WORKER_KEY].value
        elif event.event_type_value == "STEP_START":
            starts.append((entry.timestamp, entry.step_key, workers[entry.step_key], event.pid))
    return starts


def run_of(instance: dg.DagsterInstance, project: str) -> dg.DagsterRun | None:
    runs = [
        r for r in instance.get_runs() if r.run_config["ops"]["create_document_records"]["config"]["project"] == project
    ]
    return runs[0] if runs else None


def test_partitions_run_on_both_workers_and_every_document_lands_once(celery_env, workers, tmp_path):
    w1, w2 = workers("w1"), workers("w2")
    corpus = write_corpus(tmp_path / "corpus", 60)
    process = execute(
        celery_env, batch_config(str(corpus), project="two-workers", partition_size=6), tmp_path / "run.yaml"
    )
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    assert "RUN_SUCCESS" in output

    with instance_of(celery_env) as instance:
        run_id = run_of(instance, "two-workers").run_id
        starts = step_starts(instance, run_id)
    partitions = [s for s in starts if s[1].startswith("analyse_partition")]
    assert len(partitions) == 10
    assert {worker.split("@")[0] for _, _, worker, _ in partitions} == {w1.name, w2.name}, "not on both workers"
    assert {pid for *_, pid in starts} <= {w1.process.pid, w2.process.pid}  # never in the launching process
    assert process.pid not in {pid for *_, pid in starts}

    store = DocumentStore(celery_env["BATCH_PIPELINE_DATABASE_URL"])
    rows = store.results(run_id)
    store.close()
    assert len(rows) == 60 and rows["document_id"].is_unique and (rows["status"] == "ok").all()
    assert set(rows["ai_model"]) == {"local"}


def test_high_priority_run_steps_are_taken_before_those_of_a_low_one_queued_earlier(celery_env, workers, tmp_path):
    """One worker, one slot. A low-priority run queues its 20 partitions; a high-priority run launched
    after it has all of its steps taken while the low run's wait on the broker."""
    workers("solo")
    corpus = write_corpus(tmp_path / "corpus", 40)
    context = ProcessingContext(model_key="content_compliance", ai_model="local").pinned(catalogue())
    low = execute(
        celery_env, batch_config(str(corpus), project="low", partition_size=2), tmp_path / "low.yaml",
        tags=run_tags(context, "low"),
    )  # fmt: skip
    with instance_of(celery_env) as instance:
        deadline = time.monotonic() + 120
        while not any(s[1].startswith("analyse_partition") for s in _starts_of(instance, "low")):
            assert time.monotonic() < deadline and low.poll() is None, "the low-priority run did not start analysing"
            time.sleep(0.2)
        high = execute(
            celery_env, batch_config(str(corpus), project="high", partition_size=10), tmp_path / "high.yaml",
            tags=run_tags(context, "high"),
        )  # fmt: skip
        for process in (high, low):
            output, _ = process.communicate(timeout=300)
            assert process.returncode == 0, output[-3000:]
        low_starts, high_starts = _starts_of(instance, "low"), _starts_of(instance, "high")

    high_partitions = [s for s in high_starts if s[1].startswith("analyse_partition")]
    high_from, high_until = high_partitions[0][0], high_partitions[-1][0]
    low_partitions = [s for s in low_starts if s[1].startswith("analyse_partition")]
    assert len([s for s in low_partitions if s[0] > high_until]) >= 3, "the low run finished too soon to show an order"
    # Before the high run's partitions reach the broker (after its first step), the worker goes on
    # with the low run's; from then on it takes none of them until the high run's are all taken.
    in_between = [s for s in low_partitions if high_from < s[0] < high_until]
    assert not in_between, f"low-priority partitions were taken while high-priority ones waited: {in_between}"


def _starts_of(instance: dg.DagsterInstance, project: str) -> list[tuple[float, str, str, int]]:
    run = run_of(instance, project)
    return step_starts(instance, run.run_id) if run else []


def test_a_worker_killed_mid_partition_loses_no_document_and_pays_for_none_twice(celery_env, workers, tmp_path):
    """SIGKILL of a worker's whole process group mid-partition: its step goes back to the queue (late
    acknowledgement), another worker takes it and skips what was finished; every document ends ok once."""
    corpus = write_corpus(tmp_path / "corpus", 40)
    store = DocumentStore(celery_env["BATCH_PIPELINE_DATABASE_URL"])
    store.create_schema()
    with FakeOpenAIServer(Behaviour(latency=0.4)) as server:
        env = {**celery_env, "OPENAI_BASE_URL": server.url}
        doomed = workers("doomed", env)
        run_config = with_llm(
            batch_config(str(corpus), project="killed", ai_model="gpt-test", partition_size=20),
            max_concurrent_requests=2,
        )
        process = execute(env, run_config, tmp_path / "killed.yaml")
        with instance_of(env) as instance:
            deadline = time.monotonic() + 120
            run_id, done = None, 0
            while done < 6:
                assert time.monotonic() < deadline and process.poll() is None, "the run did not get far enough"
                time.sleep(0.2)
                runs = [
                    r
                    for r in instance.get_runs()
                    if r.run_config["ops"]["create_document_records"]["config"]["project"] == "killed"
                ]
                if runs:
                    run_id = runs[0].run_id
                    done = store.status_counts(run_id).get("ok", 0)
            doomed.stop(signal.SIGKILL)
            killed_at = time.time()
            done_before = set(store.results(run_id).query("status == 'ok'")["document_id"])
            assert 6 <= len(done_before) < 20, "the worker was not killed mid-partition"
            workers("survivor", env)
            output, _ = process.communicate(timeout=300)
            assert process.returncode == 0, output[-3000:]
            starts = step_starts(instance, run_id)

    rows = store.results(run_id)
    finished_texts = set(store.document_texts(list(done_before)).values())
    store.close()
    assert len(rows) == 40 and rows["document_id"].is_unique and (rows["status"] == "ok").all()
    redelivered = [s for s in starts if s[2].startswith("survivor") and s[1] == "analyse_partition[p00000]"]
    assert redelivered, "the killed worker's partition was not taken by the other worker"
    resent = [r.document for r in server.requests if r.at > killed_at]
    assert resent and finished_texts.isdisjoint(resent), "a document finished before the kill was sent again"


def submit(env: dict, url: str, corpus: Path, project: str, *options: str) -> str:
    submitted = subprocess.run(
        [BATCH_PIPELINE, "submit", str(corpus), "--model-key", "content_compliance", "--ai-model", "local",
         "--executor", "celery", "--project", project, "--url", url, *options],
        env=env, capture_output=True, text=True, timeout=180,  # the webserver answers slowly under the whole suite
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    return submitted.stdout.strip()


def wait_until_finished(instance: dg.DagsterInstance, run_id: str, timeout: float = 180) -> dg.DagsterRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            return run
        time.sleep(1)
    raise TimeoutError(f"run {run_id} did not finish")


def test_submit_runs_on_workers_and_run_monitoring_stops_a_run_whose_workers_are_gone(celery_env, workers, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 20)
    worker = workers("w1")
    with webserver_and_daemon(celery_env, tmp_path) as url, instance_of(celery_env) as instance:
        run_id = submit(celery_env, url, corpus, "submitted", "--priority", "high")
        run = wait_until_finished(instance, run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags[BROKER_PRIORITY_TAG] == BROKER_PRIORITIES["high"]
        assert {worker_name for _, _, worker_name, _ in step_starts(instance, run_id)} == {
            f"{worker.name}@{socket.gethostname()}"
        }

        worker.stop()
        orphan_id = submit(celery_env, url, corpus, "orphan", "--max-runtime", "5")
        orphan = wait_until_finished(instance, orphan_id, timeout=120)
        events = [entry.dagster_event for entry in instance.all_logs(orphan_id) if entry.dagster_event]
        # dagster-celery's loop goes on waiting for the revoked step's result, which no worker will
        # ever give: its process outlives the cancelled run (docs/guide/production.md: Celery workers).
        for event in events:
            if event.event_type == dg.DagsterEventType.RUN_START:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(event.pid, signal.SIGKILL)
        assert orphan.status in (dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE)
        messages = " ".join(event.message or "" for event in events)
        assert "exceeding maximum runtime of 5 seconds" in messages

    store = DocumentStore(celery_env["BATCH_PIPELINE_DATABASE_URL"])
    assert store.status_counts(run_id) == {"ok": 20}
    store.close()
