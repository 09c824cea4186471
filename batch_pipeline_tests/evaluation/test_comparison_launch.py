"""One batch under several contexts from the UI: compare_contexts_job refuses every bad context at
once and writes nothing; once it succeeds, comparison_runs_sensor submits one run of
document_batch_job per context with exactly that context, and `compare --launched-by` finds them."""

import json

import dagster as dg
import pytest

from batch_pipeline.cli.main import main
from batch_pipeline.cli.recovery import CannotResume, resume
from batch_pipeline.context import ProcessingContext
from batch_pipeline.definitions import defs
from batch_pipeline.defs.config import batch_run_config
from batch_pipeline.defs.tags import LAUNCHED_BY_TAG
from batch_pipeline.defs.triggers.comparison import comparison_runs_sensor
from batch_pipeline.evaluation.runs import load_run
from batch_pipeline_tests.conftest import stored_document_count, write_corpus

CONTEXTS = [
    {"model_key": "content_compliance", "ai_model": "local", "custom_instructions": ""},
    {"model_key": "content_compliance", "ai_model": "local", "custom_instructions": "flag every e-mail"},
]


def launch(instance, project: str, source: str, contexts: list[dict]) -> dg.ExecuteInProcessResult:
    config = {"project": project, "source": source, "contexts": contexts}
    return defs.resolve_job_def("compare_contexts_job").execute_in_process(
        run_config={"ops": {"check_contexts": {"config": config}}}, instance=instance, raise_on_error=False
    )


def requested_runs(instance, launcher: dg.ExecuteInProcessResult) -> list[dg.RunRequest]:
    run = instance.get_run_by_id(launcher.run_id)
    success = next(e.dagster_event for e in instance.all_logs(launcher.run_id)
                   if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_SUCCESS")  # fmt: skip
    context = dg.build_run_status_sensor_context(
        sensor_name="comparison_runs_sensor", dagster_instance=instance, dagster_run=run, dagster_event=success
    )
    return list(comparison_runs_sensor(context))


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        yield instance


def test_each_context_gets_its_own_run_and_compare_finds_them(pipeline_home, dagster_home, tmp_path, capsys):
    instance = dagster_home
    corpus = write_corpus(tmp_path / "corpus", 3)
    launcher = launch(instance, "claims", str(corpus), CONTEXTS)
    assert launcher.success
    requests = requested_runs(instance, launcher)
    assert [r.run_config for r in requests] == [
        batch_run_config("claims", str(corpus), ProcessingContext(**context)) for context in CONTEXTS
    ]
    assert [r.run_key for r in requests] == [f"{launcher.run_id}/0", f"{launcher.run_id}/1"]
    assert all(r.tags[LAUNCHED_BY_TAG] == launcher.run_id for r in requests)
    job = defs.resolve_job_def("document_batch_job")
    run_ids = [
        job.execute_in_process(run_config=r.run_config, instance=instance,
                               tags={**r.tags, "dagster/run_key": r.run_key}).run_id
        for r in reversed(requests)  # started out of order: compare still lists them in the contexts' order
    ][::-1]  # fmt: skip
    store_runs = [load_run_record(run_id) for run_id in run_ids]
    assert [(r.ai_model, r.custom_instructions) for r in store_runs] == [("local", ""), ("local", "flag every e-mail")]
    assert main(["compare", "--launched-by", launcher.run_id, "--format", "json"]) == 0
    comparison = json.loads(capsys.readouterr().out)
    assert [run["run_id"] for run in comparison["runs"]] == run_ids
    assert comparison["pairs"][0]["documents_compared"] == 3
    # A context's run resumed (same tags, dagster/* ones dropped): the newest run stands for it.
    resumed = job.execute_in_process(
        run_config=requests[0].run_config, instance=instance,
        tags={k: v for k, v in requests[0].tags.items() if not k.startswith("dagster/")},
    ).run_id  # fmt: skip
    assert main(["compare", "--launched-by", launcher.run_id, "--format", "json"]) == 0
    assert [run["run_id"] for run in json.loads(capsys.readouterr().out)["runs"]] == [resumed, run_ids[1]]


def load_run_record(run_id: str):
    from batch_pipeline import settings
    from batch_pipeline.store import DocumentStore

    store = DocumentStore(settings.database_url())
    try:
        return load_run(store, run_id).record
    finally:
        store.close()


def test_every_bad_context_is_named_at_once_and_no_run_is_requested(pipeline_home, instance, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 1)
    contexts = [
        {"model_key": "content_compliance", "ai_model": " ", "custom_instructions": ""},
        {"model_key": "content_compliance", "ai_model": "local", "custom_instructions": ""},
        {"model_key": "content_compliance", "ai_model": "local", "custom_instructions": ""},
    ]
    launcher = launch(instance, "claims", str(corpus), contexts)
    assert not launcher.success
    failure = next(e for e in launcher.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message
    assert "contexts[0] (content_compliance /  ): context.ai_model must not be empty" in message
    assert "contexts[2] (content_compliance / local) repeats an earlier context" in message
    assert stored_document_count() == 0
    assert instance.get_runs(filters=dg.RunsFilter(tags={LAUNCHED_BY_TAG: launcher.run_id})) == []
    with pytest.raises(CannotResume, match="is a run of compare_contexts_job, not a batch"):
        resume(instance, None, launcher.run_id)


def test_compare_launched_by_an_unknown_run_says_so(pipeline_home, dagster_home, capsys):
    assert main(["compare", "--launched-by", "no-such-run"]) == 2
    assert "no run was launched by no-such-run" in capsys.readouterr().err
