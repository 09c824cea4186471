"""The seed scenario: runs with different contexts at the same time, in separate processes, one store."""

import itertools
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from batch_pipeline.store import DocumentStore
from batch_pipeline_tests.conftest import EXAMPLE_COUNT, REPO_ROOT, batch_config, dagster_execute, write_corpus

BATCH_PIPELINE = str(Path(sys.executable).with_name("batch-pipeline"))


def test_four_concurrent_runs_with_different_contexts_never_cross(tmp_path, shared_store_env):
    corpus = tmp_path / "corpus"
    write_corpus(corpus, 240)
    contexts = list(itertools.product(["content_compliance", "document_metadata"], ["Be brief.", "Be thorough."]))
    processes = []
    for n, (model_key, instructions) in enumerate(contexts):
        config_path = tmp_path / f"run_{n}.yaml"
        run_config = batch_config(
            str(corpus), model_key=model_key, custom_instructions=instructions, partition_size=40, project="seed"
        )
        config_path.write_text(yaml.safe_dump(run_config))
        processes.append(
            (dagster_execute(config_path, tmp_path / f"home_{n}", shared_store_env), model_key, instructions)
        )

    store = DocumentStore(shared_store_env["BATCH_PIPELINE_DATABASE_URL"])
    for n, (process, model_key, instructions) in enumerate(processes):
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output[-3000:]
        with dg.DagsterInstance.from_config(str(tmp_path / f"home_{n}")) as instance:
            (run,) = instance.get_runs()
            assert run.status == dg.DagsterRunStatus.SUCCESS
            assert run.tags["batch_pipeline/model_key"] == model_key
        rows = store.results(run.run_id)
        assert len(rows) == 240
        assert (rows["status"] == "ok").all()
        assert set(zip(rows["model_key"], rows["ai_model"], rows["custom_instructions"], strict=True)) == {
            (model_key, "local", instructions)
        }
        assert rows["cached_from_run_id"].isna().all()  # each context is new: nothing may be reused across them
        expected_field = "findings" if model_key == "content_compliance" else "word_count"
        assert rows["result"].str.contains(f'"{expected_field}"').all()
    assert store.count_documents("seed") == 240
    store.close()


def test_readme_demo_command_runs_without_dagster_home(tmp_path, shared_store_env):
    process = dagster_execute(REPO_ROOT / "examples" / "compliance_local.yaml", None, shared_store_env)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    assert "RUN_SUCCESS" in output
    store = DocumentStore(shared_store_env["BATCH_PIPELINE_DATABASE_URL"])
    assert store.count_documents("demo") == EXAMPLE_COUNT
    store.close()


def alembic_heads(database: Path) -> list[str]:
    with sqlite3.connect(database) as conn:
        return [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]


def test_parallel_first_launches_on_a_fresh_dagster_home_after_init(tmp_path, shared_store_env):
    """What users' CI does: several launches at once against a brand-new SQLite DAGSTER_HOME.
    `batch-pipeline init` (itself started several times at once) prepares the home first."""
    home = tmp_path / "fresh" / "dagster_home"
    env = {**shared_store_env, "DAGSTER_HOME": str(home)}
    command = [BATCH_PIPELINE, "init", "--config", str(REPO_ROOT / "dagster.yaml")]
    inits = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(4)
    ]
    for init in inits:
        output, _ = init.communicate(timeout=120)
        assert init.returncode == 0, output
    assert (home / "dagster.yaml").read_text() == (REPO_ROOT / "dagster.yaml").read_text()

    config = REPO_ROOT / "examples" / "compliance_local.yaml"
    launches = [dagster_execute(config, home, env) for _ in range(4)]
    for launch in launches:
        output, _ = launch.communicate(timeout=300)
        assert launch.returncode == 0, output[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 4 and {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    # One alembic head per database: two would make every later launch fail.
    assert len(alembic_heads(home / "history" / "runs.db")) == 1
    assert len(alembic_heads(home / "schedules" / "schedules.db")) == 1


def test_init_refuses_without_dagster_home(shared_store_env):
    env = {k: v for k, v in shared_store_env.items() if k != "DAGSTER_HOME"}
    done = subprocess.run([BATCH_PIPELINE, "init"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "set DAGSTER_HOME" in done.stderr


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_run_promptly_and_leaves_it_resumable(tmp_path, shared_store_env, stop_signal):
    # 300 documents of about 0.2 s of analysis each: half a minute of work on two cores, so the
    # signal lands mid-run whatever the machine's speed (500 numbers each took 2 s since issue 14's
    # card and phone detectors, and the resume alone neared its 300 s limit). Partitions of 150:
    # the signal lands inside the first one, not in the short gap between two steps.
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for n in range(300):
        (corpus / f"cards_{n:03d}.md").write_text(" ".join(f"4111 1111 {n:04d} {i:04d}" for i in range(50)))
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(batch_config(str(corpus), project="stop", partition_size=150)))
    home = tmp_path / "home"
    process = dagster_execute(config_path, home, shared_store_env)
    store = DocumentStore(shared_store_env["BATCH_PIPELINE_DATABASE_URL"])
    store.create_schema()
    # Generous: with the whole suite on two cores, the run's start and its pool's take a while.
    deadline, run_id = time.monotonic() + 300, None
    while not (run_id and store.status_counts(run_id).get("ok", 0) >= 20):
        assert time.monotonic() < deadline and process.poll() is None, "the run did not get far enough"
        time.sleep(0.5)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            runs = instance.get_runs()
            run_id = runs[0].run_id if runs else None
    process.send_signal(stop_signal)
    stopped_at = time.monotonic()
    output, _ = process.communicate(timeout=60)
    assert time.monotonic() - stopped_at < 30, "the run did not stop promptly"
    assert process.returncode != 0
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE  # not left STARTED
    counts = store.status_counts(run_id)
    assert set(counts) == {"ok", "interrupted"} and counts["interrupted"] > 0, counts
    if stop_signal == signal.SIGTERM:
        resumed = subprocess.run(
            [BATCH_PIPELINE, "resume", run_id], env={**shared_store_env, "DAGSTER_HOME": str(home)},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        new_run_id = resumed.stdout.split("resumed_as: ")[1].split()[0]
        assert store.status_counts(new_run_id) == {"ok": 300}
    store.close()
