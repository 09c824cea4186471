"""The production setup against a real PostgreSQL server: Dagster storage and the document store on
PostgreSQL, the run queue with priorities and per-model limits, crash recovery. (Concurrent
registration on PostgreSQL is in test_store.py, parametrised over both databases.)"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.context import ProcessingContext
from batch_pipeline.defs.tags import run_tags
from batch_pipeline.store import DocumentStore
from batch_pipeline_tests.conftest import (
    EXAMPLE_COUNT,
    EXAMPLE_DOCS,
    REPO_ROOT,
    batch_config,
    dagster_execute,
    environment_without_settings,
    with_llm,
    write_corpus,
)
from batch_pipeline_tests.dagster_services import postgres_home
from testbed.fake_openai_server import Behaviour, FakeOpenAIServer

BIN = Path(sys.executable).parent


@pytest.fixture
def pg_env(postgres_store_url, postgres_dagster_url, tmp_path, monkeypatch) -> dict:
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", postgres_dagster_url)  # read by instance_at in this process
    env = environment_without_settings()
    env.update(
        BATCH_PIPELINE_DATABASE_URL=postgres_store_url,
        BATCH_PIPELINE_REPORTS_DIR=str(tmp_path / "reports"),
        DAGSTER_POSTGRES_URL=postgres_dagster_url,
        OPENAI_API_KEY="sk-test-key",
    )
    return env


def instance_at(home: Path, env: dict) -> dg.DagsterInstance:
    assert os.environ["DAGSTER_POSTGRES_URL"] == env["DAGSTER_POSTGRES_URL"]
    return dg.DagsterInstance.from_config(str(home))


def test_whole_job_with_dagster_and_store_on_postgres(tmp_path, pg_env):
    home = postgres_home(tmp_path / "home")
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(batch_config(str(EXAMPLE_DOCS), project="pg-e2e")))
    process = dagster_execute(config_path, home, pg_env)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    with instance_at(home, pg_env) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        (run,) = [
            r
            for r in instance.get_runs()
            if r.run_config["ops"]["create_document_records"]["config"]["project"] == "pg-e2e"
        ]
        assert run.status == dg.DagsterRunStatus.SUCCESS
    store = DocumentStore(pg_env["BATCH_PIPELINE_DATABASE_URL"])
    assert store.status_counts(run.run_id) == {"empty": 1, "ok": EXAMPLE_COUNT - 1}
    store.close()


def launch_queued(home: Path, env: dict, config: dict, tags: dict, path: Path) -> None:
    path.write_text(yaml.safe_dump(config))
    subprocess.run(
        [str(BIN / "dagster"), "job", "launch", "-w", "workspace.yaml", "-j", "document_batch_job",
         "-c", str(path), "--tags", json.dumps(tags)],
        cwd=REPO_ROOT, env={**env, "DAGSTER_HOME": str(home)}, check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def run_daemon_until_done(home: Path, env: dict, instance: dg.DagsterInstance, run_ids: list[str], timeout=300):
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=REPO_ROOT, env={**env, "DAGSTER_HOME": str(home)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            records = instance.get_run_records(dg.RunsFilter(run_ids=run_ids))
            if all(r.dagster_run.is_finished for r in records):
                return {r.dagster_run.run_id: r for r in records}
            time.sleep(1)
        raise TimeoutError("queued runs did not finish")
    finally:
        daemon.terminate()
        daemon.wait(30)


def queued_run_ids(instance: dg.DagsterInstance, batch_tag: str) -> list[str]:
    return [r.run_id for r in instance.get_runs(dg.RunsFilter(tags={"test_batch": batch_tag}))]


def test_queue_orders_by_priority_limits_runs_per_ai_model_and_contexts_never_cross(tmp_path, pg_env):
    """The shipped queue rules with the tags this product sets, in one daemon session: two runs at
    at once but one per ai_model. Submitted A, B (gpt-test), C (gpt-other), then D (gpt-other, high
    priority): first-in-first-out would start A and C; priority starts D and A, and C waits for D.
    Three slots for two models: only the per-model rule can keep same-model runs apart."""
    home = postgres_home(tmp_path / "home", max_concurrent_runs=3, per_model_limit=1)
    corpus = write_corpus(tmp_path / "corpus", 16)
    plan = [("gpt-test", "A", "low"), ("gpt-test", "B", "low"), ("gpt-other", "C", "low"), ("gpt-other", "D", "high")]
    with FakeOpenAIServer(Behaviour(latency=0.2)) as server, instance_at(home, pg_env) as instance:
        pg_env = {**pg_env, "OPENAI_BASE_URL": server.url}
        for ai_model, letter, priority in plan:
            config = with_llm(
                batch_config(str(corpus), project="queue", ai_model=ai_model, custom_instructions=f"Context {letter}."),
                max_concurrent_requests=8,
            )  # fmt: skip
            context = ProcessingContext(model_key="content_compliance", ai_model=ai_model).pinned(catalogue())
            tags = {**run_tags(context, priority), "test_batch": "queue", "letter": letter}
            launch_queued(home, pg_env, config, tags, tmp_path / f"queue_{letter}.yaml")
        run_ids = queued_run_ids(instance, "queue")
        assert len(run_ids) == 4
        records = run_daemon_until_done(home, pg_env, instance, run_ids)
    assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records.values())
    by_letter = {r.dagster_run.tags["letter"]: r for r in records.values()}
    assert by_letter["D"].start_time < by_letter["C"].start_time, "the high-priority run did not jump the queue"
    for first, second in (("A", "B"), ("D", "C")):  # same ai_model: never at the same time
        assert by_letter[first].end_time <= by_letter[second].start_time, f"runs {first} and {second} overlapped"
    store = DocumentStore(pg_env["BATCH_PIPELINE_DATABASE_URL"])
    for record in records.values():
        rows = store.results(record.dagster_run.run_id)
        tags = record.dagster_run.tags
        assert set(zip(rows["ai_model"], rows["custom_instructions"], strict=True)) == {
            (tags["batch_pipeline/ai_model"], f"Context {tags['letter']}.")
        }
    store.close()
    for request in server.requests:
        letter = request.system.split("Context ")[1][0]
        assert letter in ("AB" if request.model == "gpt-test" else "CD")


def test_sigkilled_run_is_finished_by_resume_without_resending_finished_documents(tmp_path, pg_env):
    home = postgres_home(tmp_path / "home")
    corpus = write_corpus(tmp_path / "corpus", 40)
    store = DocumentStore(pg_env["BATCH_PIPELINE_DATABASE_URL"])
    store.create_schema()
    with FakeOpenAIServer(Behaviour(latency=0.5)) as server, instance_at(home, pg_env) as instance:
        pg_env = {**pg_env, "OPENAI_BASE_URL": server.url}
        config = with_llm(
            batch_config(str(corpus), project="crash", ai_model="gpt-test", partition_size=10),
            max_concurrent_requests=4,
        )
        config_path = tmp_path / "crash.yaml"
        config_path.write_text(yaml.safe_dump(config))
        process = subprocess.Popen(
            [str(BIN / "dagster"), "job", "execute", "-m", "batch_pipeline.definitions", "-j", "document_batch_job",
             "-c", str(config_path), "--tags", json.dumps({"test_batch": "crash"})],
            cwd=REPO_ROOT, env={**pg_env, "DAGSTER_HOME": str(home)}, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        run_id, finished = None, 0
        while time.monotonic() < deadline and finished < 12:
            time.sleep(0.2)
            runs = instance.get_runs(dg.RunsFilter(tags={"test_batch": "crash"}))
            if runs:
                run_id = runs[0].run_id
                finished = store.status_counts(run_id).get("ok", 0)
        assert run_id and finished >= 12, "the run did not get far enough to be killed mid-analysis"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
        killed_at = time.time()
        done_before = set(store.results(run_id).query("status == 'ok'")["document_id"])
        assert 12 <= len(done_before) < 40
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED  # nothing noticed the kill

        resumed = subprocess.run(
            [str(BIN / "batch-pipeline"), "resume", run_id],
            cwd=REPO_ROOT, env={**pg_env, "DAGSTER_HOME": str(home)}, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        new_run_id = resumed.stdout.split("resumed_as: ")[1].split()[0]
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(new_run_id).tags["batch_pipeline/resumed_from"] == run_id

    old, new = store.results(run_id), store.results(new_run_id)
    assert len(new) == 40 and (new["status"] == "ok").all()
    assert set(new[new["cached_from_run_id"] == run_id]["document_id"]) == done_before
    fresh = new[new["cached_from_run_id"].isna()]
    assert set(fresh["document_id"]).isdisjoint(done_before)
    assert set(old["status"]) <= {"ok", "interrupted"}
    finished_texts = set(store.document_texts(list(done_before)).values())
    resent = {r.document for r in server.requests if r.at > killed_at}
    assert resent and resent.isdisjoint(finished_texts), "a finished document was sent again"
    store.close()
