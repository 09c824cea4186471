import argparse
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from batch_pipeline.cli.main import main
from batch_pipeline_tests.conftest import EXAMPLE_COUNT, EXAMPLE_DOCS, REPO_ROOT, batch_config, llm_endpoint, run_job

RESULT_FIELDS = {
    "run_id", "document_id", "filename", "status", "error", "model_key", "ai_model", "custom_instructions",
    "result", "cached_from_run_id", "input_tokens", "output_tokens", "cached_input_tokens", "latency_ms",
    "attempts", "request_id", "answered_by_model", "llm_api",
}  # fmt: skip


ANALYSES = REPO_ROOT / "examples" / "analyses"


@pytest.fixture
def finished_run(pipeline_home, instance) -> str:
    return run_job(instance, batch_config(str(EXAMPLE_DOCS), custom_instructions="Note vendors.")).run_id


def test_results_jsonl(finished_run, capsys):
    assert main(["results", finished_run]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == EXAMPLE_COUNT
    assert set(rows[0]) >= RESULT_FIELDS
    by_name = {r["filename"]: r for r in rows}
    assert by_name["empty.md"]["status"] == "empty" and by_name["empty.md"]["error"]
    assert by_name["hr_record.txt"]["result"]["risk_level"] == "high"
    assert by_name["hr_record.txt"]["cached_from_run_id"] is None
    assert {r["custom_instructions"] for r in rows} == {"Note vendors."}


def test_results_csv(finished_run, capsys):
    assert main(["results", finished_run, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == EXAMPLE_COUNT and set(rows[0]) >= RESULT_FIELDS
    assert json.loads(rows[0]["result"])


def test_results_for_unknown_run_exits_non_zero(pipeline_home, capsys):
    assert main(["results", "no-such-run"]) == 1
    assert "No results for run no-such-run" in capsys.readouterr().err


def test_status_counts_documents_per_status(finished_run, capsys, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert main(["status", finished_run]) == 0
    out = capsys.readouterr().out
    assert f"documents: {EXAMPLE_COUNT}" in out and f"  ok: {EXAMPLE_COUNT - 1}" in out and "  empty: 1" in out
    assert "dagster_status: unknown" in out


def test_status_reads_the_dagster_run_status_from_dagster_home(pipeline_home, tmp_path, monkeypatch, capsys):
    import dagster as dg

    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        run_id = run_job(instance, batch_config(str(EXAMPLE_DOCS))).run_id
    assert main(["status", run_id]) == 0
    assert "dagster_status: SUCCESS" in capsys.readouterr().out


def test_models_lists_every_key_with_its_description(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "content_compliance  Finds personal data" in out
    assert "document_metadata   Extracts title" in out


def test_models_json_lists_every_analysis_loaded_or_not(capsys, monkeypatch, tmp_path):
    from batch_pipeline.analysis.registry import load_catalogue

    (tmp_path / "broken.yaml").write_text("description: x\nschema: {type: object}\n")
    monkeypatch.setattr("batch_pipeline.cli.analyses.catalogue", lambda: load_catalogue([ANALYSES, tmp_path]))
    assert main(["models", "--format", "json"]) == 0
    listing = {item["key"]: item for item in json.loads(capsys.readouterr().out)}
    assert set(listing) == {"content_compliance", "document_metadata", "contract_terms", "invoice_fields",
                            "support_ticket_triage", "broken"}  # fmt: skip
    for item in listing.values():
        assert set(item) == {"key", "description", "origin", "digest", "offline", "fields", "error"}
    assert listing["invoice_fields"]["fields"]["total"] == "number" and listing["invoice_fields"]["error"] is None
    assert listing["content_compliance"]["offline"] is True and listing["invoice_fields"]["offline"] is False
    assert len(listing["contract_terms"]["digest"]) == 64
    broken = listing["broken"]
    assert broken["digest"] is None and "broken.yaml:1: prompt is missing" in broken["error"]
    assert main(["models"]) == 0
    captured = capsys.readouterr()
    assert "invoice_fields" in captured.out and "Not loaded (1)" in captured.err


def test_try_analysis_validates_a_file_and_shows_what_a_document_would_send(tmp_path, capsys):
    contract = ANALYSES / "contract_terms.yaml"
    document = tmp_path / "lease.md"
    document.write_text("LEASE between A Ltd and B LLC.")
    assert main(["try-analysis", str(contract), "--document", str(document), "--instructions", "{{ 6 * 7 }}"]) == 0
    out = capsys.readouterr().out
    assert f"{contract}: a valid analysis definition" in out and "termination_notice_days (integer)" in out
    assert "--- system ---\nYou review contracts" in out and "adds: {{ 6 * 7 }}" in out and "42" not in out
    assert "--- assistant ---" in out and "<document>\nLEASE between A Ltd and B LLC.\n</document>" in out
    assert main(["try-analysis", str(contract), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["key"] == "contract_terms"

    bad = tmp_path / "bad.yaml"
    bad.write_text(contract.read_text().replace("additionalProperties: false", "additionalProperties: true"))
    assert main(["try-analysis", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"error: {bad}:17: schema: an object must say additionalProperties: false" in err
    assert main(["try-analysis", str(tmp_path / "missing.yaml")]) == 1
    assert "missing.yaml: No such file or directory" in capsys.readouterr().err


def test_check_names_the_definitions_the_deployment_could_not_load(tmp_path, capsys, monkeypatch):
    from batch_pipeline.analysis.registry import load_catalogue

    (tmp_path / "broken.yaml").write_text("description: x\nprompt: hi\nschema: {type: object}\n")
    monkeypatch.setattr("batch_pipeline.cli.local.catalogue", lambda: load_catalogue([tmp_path]))
    assert main(["check", str(REPO_ROOT / "examples" / "compliance_local.yaml")]) == 0
    assert "warning: an analysis definition is not loaded: " + str(tmp_path / "broken.yaml") + ":3: schema" in (
        capsys.readouterr().err
    )


def test_check_names_the_bad_key_and_the_valid_ones(tmp_path, capsys):
    config = batch_config(str(EXAMPLE_DOCS), model_key="sentiment")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert (
        "error: context.model_key 'sentiment' is not an analysis this deployment has; "
        "use one of: content_compliance, document_metadata\n"
    ) in err
    assert "Traceback" not in err


def test_check_accepts_every_shipped_example(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-example")  # the LLM example names the key variable
    for path in sorted((REPO_ROOT / "examples").glob("*.yaml")):
        assert main(["check", str(path)]) == 0, path


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("batch-pipeline")
    out = subprocess.run([str(script), "models"], capture_output=True, text=True, check=True).stdout
    assert "content_compliance" in out


def test_check_says_when_the_key_variable_is_missing(monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["check", str(REPO_ROOT / "examples" / "compliance_openai.yaml")]) == 1
    err = capsys.readouterr().err
    assert "needs the environment variable OPENAI_API_KEY, which is not set" in err
    assert "Stack Trace" not in err


def test_submit_names_every_launch_problem_at_once_before_contacting_the_webserver(tmp_path, capsys):
    code = main(["submit", str(tmp_path / "nowhere"), "--model-key", "content_compliance", "--ai-model", " ",
                 "--project", "", "--url", "http://127.0.0.1:9"])  # fmt: skip
    errors = capsys.readouterr().err
    assert code == 2
    assert (
        "does not exist" in errors and "ai_model must not be empty" in errors and "project must not be empty" in errors
    )
    assert "unreachable" not in errors.lower()


def test_a_multi_context_submit_names_each_context_s_problems_before_submitting_any(capsys):
    code = main(["submit", str(EXAMPLE_DOCS), "--model-key", "content_compliance", "--model-key", "nope",
                 "--ai-model", "local", "--ai-model", "gpt-x", "--url", "http://127.0.0.1:9"])  # fmt: skip
    errors = capsys.readouterr().err
    assert code == 2 and "unreachable" not in errors.lower()  # nothing was sent: all four contexts checked first
    assert "nope / local: " in errors and "nope / gpt-x: " in errors and "content_compliance /" not in errors


def test_check_names_a_missing_source_with_the_other_problems(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(batch_config(str(tmp_path / "nowhere"), project=" ", max_pages=0)))
    assert main(["check", str(config)]) == 1
    errors = capsys.readouterr().err
    assert (
        "does not exist" in errors
        and "project must not be empty" in errors
        and "max_pages must be at least 1" in errors
    )


def test_check_and_estimate_answer_a_missing_file_and_bad_yaml_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ops:\n  create_document_records:\n    config:\n      project: x\n     source: y\n")
    for command in ("check", "estimate"):
        assert main([command, str(tmp_path / "missing.yaml")]) == 2
        assert (
            capsys.readouterr().err
            == f"error: {tmp_path / 'missing.yaml'}: no such file (give the path of a run config YAML file)\n"
        )
        assert main([command, str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {bad}:5:6: not valid YAML") and err.count("\n") == 1
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just text\n")
    assert main(["check", str(scalar)]) == 2
    assert "a run config is a mapping" in capsys.readouterr().err


def test_estimate_says_what_the_real_run_will_need(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    path = tmp_path / "llm.yaml"
    path.write_text(yaml.safe_dump(batch_config(str(EXAMPLE_DOCS), ai_model="gpt-4.1-mini")))
    assert main(["estimate", str(path)]) == 0
    captured = capsys.readouterr()
    assert "estimated_cost_usd" in captured.out
    assert "note: ai_model 'gpt-4.1-mini' is an LLM: it needs the environment variable OPENAI_API_KEY" in captured.err


def test_check_with_provider_asks_the_endpoint_for_the_key_and_the_model(monkeypatch, capsys, tmp_path):
    from testbed.fake_openai_server import FakeOpenAIServer

    with FakeOpenAIServer() as server, llm_endpoint(server.url):
        for model, key, expected in [
            ("gpt-test", "sk-test-key", 0),
            ("gpt-test", "sk-wrong", 1),
            ("gpt-unknown", "sk-test-key", 1),
        ]:
            monkeypatch.setenv("OPENAI_API_KEY", key)
            path = tmp_path / "llm.yaml"
            path.write_text(yaml.safe_dump(batch_config(str(EXAMPLE_DOCS), ai_model=model)))
            assert main(["check", str(path), "--provider"]) == expected
            captured = capsys.readouterr()
            if expected == 0:
                assert "(the provider accepts the key and serves the model)" in captured.out
            elif key == "sk-wrong":
                assert "refused the API key (HTTP 401)" in captured.err
            else:
                assert "does not serve model 'gpt-unknown'" in captured.err


def test_every_argument_of_every_command_is_explained():
    from batch_pipeline.cli.main import build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert "``" not in parser.format_help()
    for name, command in commands.choices.items():
        for action in command._actions:
            assert action.help, f"{name} {action.dest} has no help"


def test_runs_lists_the_store_s_runs_newest_first_with_filters(pipeline_home, tmp_path, monkeypatch, capsys):
    import dagster as dg

    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        first = run_job(instance, batch_config(str(EXAMPLE_DOCS), project="alpha")).run_id
        second = run_job(
            instance, batch_config(str(EXAMPLE_DOCS), project="beta", model_key="document_metadata")
        ).run_id
    assert main(["runs", "--format", "json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [run["run_id"] for run in listed] == [second, first]
    assert listed[1]["project"] == "alpha" and listed[1]["dagster_status"] == "SUCCESS"
    assert listed[1]["status_counts"] == {"empty": 1, "ok": EXAMPLE_COUNT - 1}
    assert main(["runs", "--project", "alpha"]) == 0
    table = capsys.readouterr().out
    assert first in table and second not in table and "SUCCESS" in table
    assert main(["runs", "--model-key", "document_metadata", "--format", "json"]) == 0
    assert [json.loads(line)["run_id"] for line in capsys.readouterr().out.splitlines()] == [second]


def test_a_run_without_dagster_home_says_where_its_results_went(pipeline_home, capsys, monkeypatch):
    import dagster as dg

    monkeypatch.delenv("DAGSTER_HOME", raising=False)

    instance = dg.DagsterInstance.ephemeral()
    result = run_job(instance, batch_config(str(EXAMPLE_DOCS)))
    warnings = [e.message for e in instance.all_logs(result.run_id) if e.level >= 30 and "DAGSTER_HOME" in e.message]
    assert len(warnings) == 1
    assert f"batch-pipeline results {result.run_id}" in warnings[0] and str(pipeline_home) in warnings[0]
    assert main(["runs"]) == 0 and result.run_id in capsys.readouterr().out


def test_the_commands_print_no_warning_a_user_cannot_act_on(tmp_path):
    script = Path(sys.executable).parent / "batch-pipeline"
    for command in (
        ["check", "examples/compliance_local.yaml"],
        ["estimate", "examples/compliance_local.yaml"],
        ["models"],
    ):
        done = subprocess.run([str(script), *command], cwd=REPO_ROOT, capture_output=True, text=True)
        assert "Warning" not in done.stderr, (command, done.stderr)
