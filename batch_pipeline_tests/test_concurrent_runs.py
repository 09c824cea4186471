"""The seed scenario: runs with different contexts at the same time, in separate processes, one store."""

import itertools
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from batch_pipeline.store import DocumentStore
from batch_pipeline_tests.conftest import REPO_ROOT, batch_config

DAGSTER = str(Path(sys.executable).with_name("dagster"))


def write_corpus(folder: Path, count: int) -> None:
    folder.mkdir()
    for i in range(count):
        (folder / f"doc_{i:04d}.md").write_text(
            f"# Memo {i}\n\nPlease contact user{i}@example.com about invoice {i}.\n\nShipped on 2024-05-{i % 28 + 1:02d}."
        )


def launch(config_path: Path, dagster_home: Path | None, env: dict) -> subprocess.Popen:
    run_env = {**env}
    if dagster_home is not None:
        dagster_home.mkdir()
        run_env["DAGSTER_HOME"] = str(dagster_home)
    else:
        run_env.pop("DAGSTER_HOME", None)
    return subprocess.Popen(
        [DAGSTER, "job", "execute", "-m", "batch_pipeline.definitions", "-j", "document_batch_job", "-c", str(config_path)],
        cwd=REPO_ROOT,
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def shared_store_env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCH_PIPELINE_")}
    env["BATCH_PIPELINE_DATABASE_URL"] = f"sqlite:///{tmp_path / 'shared_store.sqlite'}"
    env["BATCH_PIPELINE_REPORTS_DIR"] = str(tmp_path / "reports")
    return env


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
        processes.append((launch(config_path, tmp_path / f"home_{n}", shared_store_env), model_key, instructions))

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
        assert set(zip(rows["model_key"], rows["ai_model"], rows["custom_instructions"])) == {
            (model_key, "local", instructions)
        }
        assert rows["cached_from_run_id"].isna().all()  # each context is new: nothing may be reused across them
        expected_field = "findings" if model_key == "content_compliance" else "word_count"
        assert rows["result"].str.contains(f'"{expected_field}"').all()
    assert store.count_documents("seed") == 240
    store.close()


def test_readme_demo_command_runs_without_dagster_home(tmp_path, shared_store_env):
    process = launch(REPO_ROOT / "examples" / "compliance_local.yaml", None, shared_store_env)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    assert "RUN_SUCCESS" in output
    store = DocumentStore(shared_store_env["BATCH_PIPELINE_DATABASE_URL"])
    assert store.count_documents("demo") == 13
    store.close()
