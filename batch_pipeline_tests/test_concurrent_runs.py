"""The seed scenario: runs with different contexts at the same time, in separate processes, one store."""

import itertools

import dagster as dg
import yaml

from batch_pipeline.store import DocumentStore
from batch_pipeline_tests.conftest import REPO_ROOT, batch_config, dagster_execute, write_corpus



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
        processes.append((dagster_execute(config_path, tmp_path / f"home_{n}", shared_store_env), model_key, instructions))

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
    process = dagster_execute(REPO_ROOT / "examples" / "compliance_local.yaml", None, shared_store_env)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    assert "RUN_SUCCESS" in output
    store = DocumentStore(shared_store_env["BATCH_PIPELINE_DATABASE_URL"])
    assert store.count_documents("demo") == 13
    store.close()
