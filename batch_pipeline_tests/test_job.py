"""document_batch_job end to end, in process, against a temporary instance and store."""

import json
import os
import re
import shutil

import dagster as dg
import pandas as pd
import pytest
import yaml

from batch_pipeline import settings
from batch_pipeline.store import DocumentStore
from batch_pipeline_tests.conftest import EXAMPLE_DOCS, REPO_ROOT, batch_config, run_job


def results(run_id: str) -> pd.DataFrame:
    store = DocumentStore(settings.database_url())
    try:
        return store.results(run_id).set_index("filename")
    finally:
        store.close()


def step_keys(result: dg.ExecuteInProcessResult) -> list[str]:
    return sorted({e.step_key for e in result.all_events if e.is_step_success})


def test_examples_end_to_end(pipeline_home, instance):
    result = run_job(instance, batch_config(str(EXAMPLE_DOCS), custom_instructions="Flag vendor e-mails too."))
    assert result.success
    rows = results(result.run_id)
    example_files = sorted(p.name for p in EXAMPLE_DOCS.iterdir())
    assert sorted(rows.index) == example_files
    assert rows.loc["empty.md", "status"] == "empty"
    assert (rows.drop(index="empty.md")["status"] == "ok").all()
    assert set(rows["custom_instructions"]) == {"Flag vendor e-mails too."}
    runbook = json.loads(rows.loc["deploy_runbook.md", "result"])
    assert runbook["risk_level"] == "high" and not runbook["compliant"]
    assert json.loads(rows.loc["onboarding_guide.md", "result"])["compliant"] is True
    agreement = json.loads(rows.loc["supply_agreement.pdf", "result"])  # converted from PDF when read
    assert {f["category"] for f in agreement["findings"]} == {"email", "iban"}
    assert rows.loc["supply_agreement.pdf", "converter"].startswith("pypdfium2 ")
    escalation = json.loads(rows.loc["shipment_escalation.eml", "result"])
    assert {f["category"] for f in escalation["findings"]} == {"email"}

    report_dir = pipeline_home / "reports" / result.run_id
    assert (report_dir / "results.csv").exists()
    summary = (report_dir / "summary.md").read_text()
    assert "findings.category: items per value" in summary and "| secret" in summary
    page = (report_dir / "report.html").read_text()
    assert page.count("<svg") >= 2  # outcomes and findings per category, drawn inline
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched: opens offline
    flagged = page.index("Flagged documents")
    assert page.index("deploy_runbook.md", flagged) < page.index("Failed documents")  # flagged, with its excerpt
    assert "AKIA" in page and "AKIAIOSFODNN7EXAMPLE" not in page  # masked as the analyser masked it
    assert page.index("empty.md", page.index("Failed documents")) > 0 and "the document is empty" in page
    # Flagged documents first; charts after them, counts on whole-number ticks, risk levels in
    # order and coloured by severity; excerpts without markdown's marks.
    assert page.index("Flagged documents") < page.index("Overview") < page.index("<svg")
    risk_chart = page[page.index("risk_level: documents per value") :]
    risk_chart = risk_chart[: risk_chart.index("</svg>")]
    heights = {
        m[2]: float(m[1]) for m in re.finditer(r'<text[^>]*?y="([0-9.]+)"[^>]*>(none|low|medium|high)<', risk_chart)
    }
    assert len(heights) >= 2 and sorted(heights, key=heights.get) == [
        level for level in ("none", "low", "medium", "high") if level in heights
    ]  # top to bottom, least severe first
    assert "#d62728" in risk_chart or "#f58518" in risk_chart
    assert not re.search(r">\d+\.5<", page)  # no tick at 2.5 or 7.5 on a count axis
    flagged_section = page[page.index("Flagged documents") : page.index("Overview")]
    assert "**" not in flagged_section
    csv_latency = pd.read_csv(report_dir / "results.csv")["latency_ms"].dropna()
    assert (csv_latency == csv_latency.round(1)).all()

    run = instance.get_run_by_id(result.run_id)
    assert run.tags["batch_pipeline/model_key"] == "content_compliance"
    assert run.tags["batch_pipeline/ai_model"] == "local"

    (materialization,) = result.asset_materializations_for_node("aggregate")
    assert materialization.asset_key == dg.AssetKey(["batch_pipeline", "analysed_documents"])
    assert materialization.partition == "test"
    assert instance.has_dynamic_partition("batch_pipeline_projects", "test")
    assert materialization.metadata["run_id"].value == result.run_id
    assert materialization.metadata["docs_per_second"].value > 0
    assert 0 < materialization.metadata["latency_p50_ms"].value <= materialization.metadata["latency_p95_ms"].value
    assert materialization.metadata["model_key"].value == "content_compliance"
    assert materialization.metadata["custom_instructions"].value == "Flag vendor e-mails too."
    assert materialization.metadata["documents"].value == len(example_files)
    assert materialization.metadata["failed"].value == 1
    table = materialization.metadata["status_counts"]
    assert {r.data["status"]: r.data["documents"] for r in table.records} == {"empty": 1, "ok": len(example_files) - 1}
    assert materialization.metadata["report_summary"].value.endswith("summary.md")
    assert materialization.metadata["report_html"].value.endswith("report.html")
    assert materialization.metadata["run"].value == result.run_id
    summary = materialization.metadata["model_summary"].value
    assert not summary.lstrip().startswith("#") and "**findings.category: items per value**" in summary
    flagged = materialization.metadata["flagged_documents"]
    first = flagged.records[0].data
    assert first["level"] == "high" and first["items"] >= 1 and "*" in first["first"]  # masked, as stored
    assert "AKIAIOSFODNN7EXAMPLE" not in str([r.data for r in flagged.records])


def test_custom_instructions_with_offline_analysers_log_a_warning(pipeline_home, instance):
    result = run_job(instance, batch_config(str(EXAMPLE_DOCS), custom_instructions="Be strict."))
    warnings = [
        e.message
        for e in instance.all_logs(result.run_id)
        if e.level == 30 and "do not interpret" in (e.user_message or "")
    ]
    assert warnings


def test_documents_are_analysed_in_partitions_of_the_configured_size(pipeline_home, instance):
    result = run_job(instance, batch_config(str(EXAMPLE_DOCS), model_key="document_metadata", partition_size=5))
    assert result.success
    mapped = [k for k in step_keys(result) if k.startswith("analyse_partition")]
    assert mapped == ["analyse_partition[p00000]", "analyse_partition[p00001]", "analyse_partition[p00002]"]
    rows = results(result.run_id)
    assert json.loads(rows.loc["rapport_trimestriel.md", "result"])["language"] == "fr"


@pytest.fixture
def bad_batch(tmp_path):
    folder = tmp_path / "bad_batch"
    folder.mkdir()
    shutil.copy(EXAMPLE_DOCS / "customer_support_ticket.md", folder)
    (folder / "scan.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x02\x00")
    (folder / "legacy_latin1.txt").write_bytes("Réunion à Paris — café, crème brûlée.\nÉté 2024.".encode("cp1252"))
    (folder / "blank.md").write_bytes(b"")
    (folder / "huge.md").write_text("word " * 50_000)
    return folder


def test_bad_documents_fail_alone_with_their_reason(pipeline_home, instance, bad_batch):
    result = run_job(instance, batch_config(str(bad_batch), max_document_bytes=100_000))
    assert result.success
    rows = results(result.run_id)
    assert rows["status"].to_dict() == {
        "blank.md": "empty",
        "customer_support_ticket.md": "ok",
        "huge.md": "too_large",
        "legacy_latin1.txt": "ok",
        "scan.md": "unreadable",
    }
    assert "binary" in rows.loc["scan.md", "error"]
    assert "over the limit of 100000 bytes" in rows.loc["huge.md", "error"]
    assert (rows[rows["status"] == "ok"]["error"] == "").all()
    (materialization,) = result.asset_materializations_for_node("aggregate")
    assert materialization.metadata["failed"].value == 3


def test_failure_policy_fail_fails_the_run_after_storing_everything(pipeline_home, instance, bad_batch):
    result = run_job(
        instance,
        batch_config(str(bad_batch), on_document_failure="fail", max_document_bytes=100_000),
        raise_on_error=False,
    )
    assert not result.success
    failure = [e for e in result.all_events if e.is_step_failure][0]
    assert failure.step_key == "aggregate"
    assert "3 of 5 documents failed" in failure.event_specific_data.error.message
    assert len(results(result.run_id)) == 5
    assert (pipeline_home / "reports" / result.run_id / "summary.md").exists()


def test_running_the_same_batch_twice_reuses_every_result(pipeline_home, instance):
    first = run_job(instance, batch_config(str(EXAMPLE_DOCS)))
    store = DocumentStore(settings.database_url())
    documents_after_first = store.count_documents()
    second = run_job(instance, batch_config(str(EXAMPLE_DOCS)))
    assert store.count_documents() == documents_after_first
    first_rows, second_rows = results(first.run_id), results(second.run_id)
    ok = second_rows[second_rows["status"] == "ok"]
    assert len(ok) == len(list(EXAMPLE_DOCS.iterdir())) - 1  # all but empty.md
    assert (ok["cached_from_run_id"] == first.run_id).all()
    assert (ok["result"] == first_rows.loc[ok.index, "result"]).all()
    assert first_rows["cached_from_run_id"].isna().all()

    forced = run_job(instance, batch_config(str(EXAMPLE_DOCS), force=True))
    assert results(forced.run_id)["cached_from_run_id"].isna().all()

    other_context = run_job(instance, batch_config(str(EXAMPLE_DOCS), custom_instructions="new"))
    assert results(other_context.run_id)["cached_from_run_id"].isna().all()
    store.close()
    # Throughput counts the documents a run analysed: a run served entirely from the cache has none.
    (cached,) = second.asset_materializations_for_node("aggregate")
    assert cached.metadata["analysed_this_run"].value == 0 and cached.metadata["docs_per_second"].value is None
    (forced_materialization,) = forced.asset_materializations_for_node("aggregate")
    assert forced_materialization.metadata["analysed_this_run"].value == len(list(EXAMPLE_DOCS.iterdir())) - 1


def _nothing_written(instance, pipeline_home) -> bool:
    store = DocumentStore(settings.database_url())
    store.create_schema()
    try:
        with store.engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT COUNT(*) FROM analysis_results").scalar()
        return store.count_documents() == 0 and rows == 0
    finally:
        store.close()


@pytest.mark.parametrize(
    "context_override, message",
    [
        ({"model_key": "sentiment"}, "model_key not in enum type ModelKey got sentiment"),
        ({"model_key": "content_compliance", "ai_model": None}, 'Missing required config entry "ai_model"'),
    ],
)
def test_bad_context_is_refused_at_launch_and_no_run_is_stored(pipeline_home, instance, context_override, message):
    run_config = batch_config(str(EXAMPLE_DOCS))
    context = run_config["ops"]["create_document_records"]["config"]["context"]
    context.update(context_override)
    if context["ai_model"] is None:
        del context["ai_model"]
    with pytest.raises(dg.DagsterInvalidConfigError, match=message):
        run_job(instance, run_config)
    assert instance.get_runs() == []
    assert _nothing_written(instance, pipeline_home)


def test_a_bad_batch_fails_the_run_before_anything_is_written(pipeline_home, instance, tmp_path):
    """The op's side of the launch refusals (launch/test_sequence.py has each one): the step fails
    with the launch's message, for good (no retry), and nothing is written."""
    run_config = batch_config(str(tmp_path / "no-such-folder"), ai_model=" ")
    result = run_job(instance, run_config, raise_on_error=False)
    assert not result.success
    failure = [e for e in result.all_events if e.is_step_failure][0]
    assert failure.step_key == "create_document_records"
    message = failure.event_specific_data.error.message
    assert "Refused before writing anything" in message and "ai_model must not be empty" in message
    assert "does not exist" in message
    assert _nothing_written(instance, pipeline_home)
    # Tagged all the same: the Runs page's filters by project and model find the refused run too.
    tags = instance.get_run_by_id(result.run_id).tags
    assert (tags["batch_pipeline/project"], tags["batch_pipeline/model_key"]) == ("test", "content_compliance")
    assert tags["batch_pipeline/ai_model"] == " "


def test_inline_documents(pipeline_home, instance, monkeypatch):
    # Where the deployment serves the reports folder, the asset page links each report.
    monkeypatch.setenv("BATCH_PIPELINE_REPORTS_URL", "https://reports.example/")
    run_config = batch_config(documents=[{"filename": "n.md", "markdown_content": "# N\n\nmail x@example.com"}])
    result = run_job(instance, run_config)
    assert results(result.run_id).loc["n.md", "status"] == "ok"
    (materialization,) = result.asset_materializations_for_node("aggregate")
    link = materialization.metadata["report_html"]
    assert isinstance(link, dg.UrlMetadataValue)
    assert link.value == f"https://reports.example/{result.run_id}/report.html"


def test_a_folder_of_unlucky_entries_completes_with_each_reason_stored_or_listed(pipeline_home, instance, tmp_path):
    folder = tmp_path / "unlucky"
    folder.mkdir()
    (folder / "good.md").write_text("# Fine\n\nContact jane@example.com.")
    with open(os.fsencode(folder) + b"/caf\xe9.md", "wb") as f:
        f.write(b"# Menu du jour")
    with (folder / "huge.md").open("wb") as f:
        f.truncate(5 * 1024**3)  # sparse: never read
    (folder / "passwd.txt").symlink_to("/etc/passwd")
    os.mkfifo(folder / "pipe.md")
    result = run_job(instance, batch_config(str(folder)))
    assert result.success
    rows = results(result.run_id)
    assert rows.loc["good.md", "status"] == "ok"
    assert rows.loc["caf\\xe9.md", "status"] == "ok"
    assert rows.loc["huge.md", "status"] == "too_large"
    assert "passwd.txt" not in rows.index and "pipe.md" not in rows.index
    batch_output = next(
        e for e in result.all_events if e.is_successful_output and e.step_key == "create_document_records"
    )
    skipped = batch_output.event_specific_data.metadata["skipped_entries"].value
    assert sorted(s.split(":")[0] for s in skipped) == ["passwd.txt", "pipe.md"]


@pytest.mark.parametrize(
    "name", ["compliance_local", "metadata_fails_on_empty_document", "inline_documents", "jsonl_source"]
)
def test_the_offline_examples_run_as_their_names_say(pipeline_home, instance, monkeypatch, name):
    monkeypatch.chdir(REPO_ROOT)  # their sources are relative to the repository, as the README runs them
    run_config = yaml.safe_load((REPO_ROOT / "examples" / f"{name}.yaml").read_text())
    result = run_job(instance, run_config, raise_on_error=False)
    assert result.success is ("fails" not in name)
    if not result.success:
        assert "on_document_failure: fail" in str(result.failure_data_for_node("aggregate"))
