"""analysed_documents' checks: the failure rate and the score on labelled answers, against lines set
per run or per deployment; a failed check fails the run once its results and report are stored, in
document_batch_job and when Materialize runs the graph-backed asset; compare and evaluate say so."""

import json

import dagster as dg
import pytest

from batch_pipeline.definitions import defs
from batch_pipeline.defs.assets import ANALYSED_DOCUMENTS, ASSET_NODE, PROJECTS
from batch_pipeline.evaluation.compare import compare
from batch_pipeline.evaluation.runs import load_run
from batch_pipeline_tests.conftest import batch_config, run_job, stored_document_count, write_corpus


@pytest.fixture
def corpus(tmp_path):
    """Three documents with one e-mail address each (risk low, as the offline analyser finds) and an empty one."""
    folder = write_corpus(tmp_path / "corpus", 3)
    (folder / "empty.md").write_text("")
    return folder


def labels_file(folder, expected: dict[str, str]):
    path = folder / "labels.jsonl"
    path.write_text("".join(json.dumps({"filename": name, "expected": {"risk_level": level}}) + "\n"
                            for name, level in expected.items()))  # fmt: skip
    return path


def asset_config(run_config: dict) -> dict:
    """The same settings as the asset's run config (one level up: the asset's own, not an op's)."""
    return {"ops": {ASSET_NODE: {"config": run_config["ops"]["create_document_records"]["config"]}}}


def materialize(instance, run_config: dict, partition: str) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions(PROJECTS.name, [partition])
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        run_config=asset_config(run_config), instance=instance, partition_key=partition, raise_on_error=False
    )


def check_evaluations(instance, run_id: str) -> dict[str, dg.AssetCheckEvaluation]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    return {r.event_log_entry.dagster_event.event_specific_data.check_name: r.event_log_entry.dagster_event.event_specific_data for r in records}  # fmt: skip


def test_a_failure_rate_over_the_line_fails_the_job_after_everything_is_stored(pipeline_home, instance, store, corpus):
    config = batch_config(str(corpus), checks={"max_failure_rate": 0.2})
    result = run_job(instance, config, raise_on_error=False)
    assert not result.success
    run_id = result.run_id
    loaded = load_run(store, run_id)
    assert loaded.report.status_counts == {"empty": 1, "ok": 3}
    failure_rate = loaded.record.checks[0]
    assert (failure_rate.name, failure_rate.passed, failure_rate.value, failure_rate.threshold) == (
        "failure_rate", False, 0.25, 0.2,
    )  # fmt: skip
    evaluation = check_evaluations(instance, run_id)["failure_rate"]
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.partition == "test"  # per project: another project's outcome does not replace it
    assert "1 of 4 documents failed (25.0%); at most 20.0% required" in evaluation.description
    report_folder = pipeline_home / "reports" / run_id
    assert "The run failed its check failure_rate" in (report_folder / "summary.md").read_text()
    assert "The run failed its check" in (report_folder / "report.html").read_text()
    failure = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "failed its check failure_rate" in failure[0].step_failure_data.error.message
    # compare says so, beside a run that kept the line.
    passing = run_job(instance, batch_config(str(corpus), checks={"max_failure_rate": 0.3}))
    comparison = compare([load_run(store, passing.run_id), loaded])
    assert comparison.runs[0].checks == "passed"
    assert comparison.runs[1].checks.startswith("failed its check failure_rate (1 of 4 documents failed")


def test_the_deployment_sets_the_line_for_runs_that_set_none(pipeline_home, instance, store, corpus, monkeypatch):
    monkeypatch.setenv("BATCH_PIPELINE_MAX_FAILURE_RATE", "0.1")
    assert not run_job(instance, batch_config(str(corpus)), raise_on_error=False).success
    kept = run_job(instance, batch_config(str(corpus), checks={"max_failure_rate": 0.5}))
    assert load_run(store, kept.run_id).record.checks[0].threshold == 0.5
    monkeypatch.delenv("BATCH_PIPELINE_MAX_FAILURE_RATE")
    measured = run_job(instance, batch_config(str(corpus)))  # no line anywhere: measured, passed
    outcome = load_run(store, measured.run_id).record.checks[0]
    assert (outcome.passed, outcome.value, outcome.threshold) == (True, 0.25, None)


def test_the_labelled_score_check_scores_the_run_and_blocks_under_its_minimum(pipeline_home, instance, store, corpus):
    labels = labels_file(corpus.parent, {"doc_0000.md": "low", "doc_0001.md": "high", "doc_0002.md": "low"})
    blocked = run_job(instance, batch_config(str(corpus), checks={"labels": str(labels), "min_score": 0.9}),
                      raise_on_error=False)  # fmt: skip
    assert not blocked.success
    outcome = {c.name: c for c in load_run(store, blocked.run_id).record.checks}["labelled_score"]
    assert (outcome.passed, outcome.value, outcome.threshold) == (False, 0.6667, 0.9)
    assert outcome.description.startswith("overall score 66.7% on 3 of 3 labelled documents")
    kept = run_job(instance, batch_config(str(corpus), checks={"labels": str(labels), "min_score": 0.6}))
    assert check_evaluations(instance, kept.run_id)["labelled_score"].passed
    materialization = kept.asset_materializations_for_node("aggregate")[0]
    assert materialization.metadata["labelled_score · local"].value == 0.6667
    assert materialization.metadata["failure_rate · local"].value == 0.25


def test_materialize_runs_the_pipeline_as_the_asset_with_its_checks(pipeline_home, instance, store, corpus):
    config = batch_config(str(corpus), project="claims", checks={"max_failure_rate": 0.5})
    result = materialize(instance, config, "claims")
    assert result.success
    (materialization,) = result.asset_materializations_for_node(ASSET_NODE)
    assert materialization.asset_key == ANALYSED_DOCUMENTS and materialization.partition == "claims"
    assert materialization.metadata["documents"].value == 4
    assert materialization.metadata["cost_per_1000_documents_usd · local"].value == 0.0
    evaluations = check_evaluations(instance, result.run_id)
    assert evaluations.keys() == {"failure_rate"} and evaluations["failure_rate"].passed
    assert evaluations["failure_rate"].partition == "claims"
    assert instance.get_latest_materialization_event(ANALYSED_DOCUMENTS).run_id == result.run_id


def test_a_failed_check_fails_the_materialization_after_its_results_are_stored(pipeline_home, instance, store, corpus):
    result = materialize(
        instance, batch_config(str(corpus), project="claims", checks={"max_failure_rate": 0.1}), "claims"
    )
    assert not result.success
    assert load_run(store, result.run_id).report.status_counts == {"empty": 1, "ok": 3}
    assert not check_evaluations(instance, result.run_id)["failure_rate"].passed
    assert instance.get_latest_materialization_event(ANALYSED_DOCUMENTS).run_id == result.run_id


def test_materialize_refuses_a_project_other_than_its_partition(pipeline_home, instance, corpus):
    result = materialize(instance, batch_config(str(corpus), project="other"), "claims")
    assert not result.success
    failure = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE][0]
    assert "materializes partition 'claims' of analysed_documents but its config names project 'other'" in (
        failure.step_failure_data.error.message
    )
    assert stored_document_count() == 0


def test_a_bad_checks_section_is_refused_at_launch_with_every_problem_named(pipeline_home, instance, tmp_path, corpus):
    outside = "/etc/labels.jsonl"  # not under the allowed roots
    bad_json = corpus.parent / "bad.jsonl"
    bad_json.write_text('{"filename": "doc_0000.md", "expected": {"no_such_field": 1}}\n')
    for checks, problems in [
        ({"max_failure_rate": 1.5, "min_score": 0.5}, ["checks.max_failure_rate must be from 0 to 1, got 1.5",
                                                      "checks.min_score is set but checks.labels is not"]),
        ({"labels": outside}, ["checks.labels: Labels file", "is outside the folders this deployment allows"]),
        ({"labels": str(bad_json)}, ["checks.labels: labels name fields content_compliance does not have: no_such_field"]),
    ]:  # fmt: skip
        result = run_job(instance, batch_config(str(corpus), checks=checks), raise_on_error=False)
        message = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE][0]
        for problem in problems:
            assert problem in message.step_failure_data.error.message
    assert stored_document_count() == 0


def test_a_bad_deployment_line_is_refused_at_launch(pipeline_home, instance, corpus, monkeypatch):
    monkeypatch.setenv("BATCH_PIPELINE_MIN_SCORE", "high")
    result = run_job(instance, batch_config(str(corpus)), raise_on_error=False)
    failure = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE][0]
    assert (
        "$BATCH_PIPELINE_MIN_SCORE is 'high'; it must be a number from 0 to 1"
        in failure.step_failure_data.error.message
    )
    assert stored_document_count() == 0


def test_resume_finishes_a_materialization_that_crashed_as_the_same_asset_partition(
    pipeline_home, instance, store, corpus, monkeypatch
):
    from batch_pipeline.cli.recovery import resume
    from batch_pipeline.defs.tags import RESUMED_FROM_TAG

    with monkeypatch.context() as crashing:

        def crash(*_):
            raise dg.Failure("crashed reading the partition's texts", allow_retries=False)

        crashing.setattr("batch_pipeline.batch.runner.texts_to_analyse", crash)
        crashed = materialize(instance, batch_config(str(corpus), project="claims"), "claims")
    assert not crashed.success
    resumed = resume(instance, store, crashed.run_id)
    assert resumed.success
    run = instance.get_run_by_id(resumed.run_id)
    assert run.job_name == "analysed_documents_job" and run.tags["dagster/partition"] == "claims"
    assert run.tags[RESUMED_FROM_TAG] == crashed.run_id
    latest = instance.get_latest_materialization_event(ANALYSED_DOCUMENTS)
    assert latest.run_id == resumed.run_id and latest.dagster_event.partition == "claims"
    assert load_run(store, resumed.run_id).report.status_counts == {"empty": 1, "ok": 3}


def test_the_labels_are_checked_again_where_the_check_reads_them(pipeline_home, store, tmp_path):
    """Swapped for a link out of the allowed folders, or for bytes that are not text, after the
    launch: the check fails, saying so without the link's target, and the report is still written."""
    import os

    from batch_pipeline.batch.request import RunChecks
    from batch_pipeline.evaluation.checks import run_checks

    link = tmp_path / "labels.jsonl"
    os.symlink("/etc/hostname", link)
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe{}\n")
    for labels, expected in ((link, "is outside the folders this deployment allows"), (binary, "not UTF-8 text")):
        _, outcome = run_checks(store, "no-run", RunChecks(labels=str(labels), min_score=0.5), {"ok": 1})
        assert (outcome.name, outcome.passed, outcome.value) == ("labelled_score", False, None)
        assert expected in outcome.description and "/etc" not in outcome.description
