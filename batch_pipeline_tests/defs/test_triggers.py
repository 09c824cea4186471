import http.server
import json
import os
import threading
import urllib.error
from pathlib import Path
from unittest import mock

import dagster as dg
import pytest

from batch_pipeline.definitions import defs
from batch_pipeline.defs.triggers.failure_sensor import batch_failure_sensor, post_json
from batch_pipeline.defs.triggers.inbox_sensor import InboxConfig, inbox_sensor
from batch_pipeline_tests.conftest import EXAMPLE_DOCS, batch_config, run_job


def evaluate(inbox: Path, cursor: str | None = None, **defaults):
    """The sensor evaluated with the deployment's inbox set to ``inbox``."""
    with mock.patch.dict(os.environ, {"BATCH_PIPELINE_INBOX": str(inbox)}):
        context = dg.build_sensor_context(cursor=cursor, resources={"inbox": InboxConfig(**defaults)})
        return inbox_sensor(context), context.cursor


@pytest.fixture
def inbox(tmp_path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "batch.yaml").write_text(
        "model_key: content_compliance\nai_model: local\ncustom_instructions: Inbox run.\npriority: high\n"
    )
    (folder / "a.md").write_text("# A\n\nmail a@example.com")
    (folder / "b.txt").write_text("B plain text")
    return folder


def test_new_files_become_one_run_request_and_the_same_files_never_run_twice(inbox):
    request, cursor = evaluate(inbox, project="inbox-test")
    assert isinstance(request, dg.RunRequest)
    config = request.run_config["ops"]["create_document_records"]["config"]
    assert config["context"] == {
        "model_key": "content_compliance",
        "ai_model": "local",
        "custom_instructions": "Inbox run.",
    }
    assert config["project"] == "inbox-test"
    assert sorted(p.name for p in Path(config["source"]).iterdir()) == ["a.md", "b.txt"]
    assert request.tags["dagster/priority"] == "10" and request.tags["batch_pipeline/ai_model"] == "local"
    assert len(request.run_key) == 32

    again, same_cursor = evaluate(inbox, cursor)
    assert isinstance(again, dg.SkipReason) and "no new or changed files" in again.skip_message
    assert same_cursor == cursor

    (inbox / "a.md").write_text("# A\n\nchanged")
    changed, _ = evaluate(inbox, cursor)
    assert isinstance(changed, dg.RunRequest) and changed.run_key != request.run_key
    source = Path(changed.run_config["ops"]["create_document_records"]["config"]["source"])
    assert [p.name for p in source.iterdir()] == ["a.md"]


def test_the_run_key_is_derived_from_the_file_hashes(tmp_path, inbox):
    first, _ = evaluate(inbox)
    other = tmp_path / "other"
    other.mkdir()
    for name in ("batch.yaml", "a.md", "b.txt"):
        (other / name).write_bytes((inbox / name).read_bytes())
    second, _ = evaluate(other)
    assert first.run_key == second.run_key


def test_bad_batch_yaml_is_a_skip_reason_and_keeps_the_files_waiting(inbox):
    (inbox / "batch.yaml").write_text("model_key: sentiment\nai_model: local\n")
    skip, cursor = evaluate(inbox)
    assert isinstance(skip, dg.SkipReason)
    assert "2 new file(s) waiting" in skip.skip_message and "model_key 'sentiment'" in skip.skip_message
    assert cursor is None
    (inbox / "batch.yaml").write_text("model_key: document_metadata\nai_model: local\n")
    fixed, _ = evaluate(inbox, cursor)
    assert isinstance(fixed, dg.RunRequest)


def test_sensor_defaults_apply_without_batch_yaml(tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "a.md").write_text("# A")
    skip, _ = evaluate(folder)
    assert "no model_key" in skip.skip_message
    skip, _ = evaluate(folder, model_key="document_metadata")
    assert "no ai_model" in skip.skip_message
    request, _ = evaluate(folder, model_key="document_metadata", ai_model="local", priority="low")
    assert request.run_config["ops"]["create_document_records"]["config"]["context"]["model_key"] == "document_metadata"
    assert request.tags["dagster/priority"] == "-10"


class _Webhook(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_failed_run_is_posted_to_the_webhook(pipeline_home, instance, tmp_path, monkeypatch):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("BATCH_PIPELINE_FAILURE_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ok.md").write_text("# fine")
    (bad / "empty.md").write_text("")
    run_config = batch_config(str(bad), custom_instructions="nightly", checks={"max_failure_rate": 0.25})
    result = run_job(instance, run_config, raise_on_error=False)
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    failure = next(
        e.dagster_event
        for e in instance.all_logs(result.run_id)
        if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_FAILURE"
    )
    context = dg.build_run_status_sensor_context(
        sensor_name="batch_failure_sensor", dagster_instance=instance, dagster_run=run, dagster_event=failure
    ).for_run_failure()
    batch_failure_sensor(context)
    server.shutdown()
    (message,) = _Webhook.received
    assert message["run_id"] == result.run_id
    assert message["model_key"] == "content_compliance" and message["ai_model"] == "local"
    assert message["custom_instructions"] == "nightly"
    assert message["failed_documents"] == 1 and message["status_counts"] == {"empty": 1, "ok": 1}
    assert message["text"].endswith("failed its check failure_rate")
    assert [(c["name"], c["value"], c["threshold"]) for c in message["failed_checks"]] == [("failure_rate", 0.5, 0.25)]


def test_schedule_is_stopped_by_default_and_produces_the_documented_run_config(tmp_path, monkeypatch):
    from batch_pipeline.defs.triggers.nightly_sweep import nightly_compliance_sweep

    assert nightly_compliance_sweep.default_status == dg.DefaultScheduleStatus.STOPPED
    assert nightly_compliance_sweep.cron_schedule == "0 2 * * *"
    monkeypatch.setenv("BATCH_PIPELINE_SWEEP_SOURCE", str(EXAMPLE_DOCS))
    context = dg.build_schedule_context(scheduled_execution_time=__import__("datetime").datetime(2026, 1, 1, 2))
    request = nightly_compliance_sweep(context)
    config = request.run_config["ops"]["create_document_records"]["config"]
    assert config == {
        "project": "nightly-sweep",
        "source": str(EXAMPLE_DOCS),
        "context": {"model_key": "content_compliance", "ai_model": "local", "custom_instructions": ""},
    }
    assert request.tags["dagster/priority"] == "-10"
    assert dg.validate_run_config(defs.resolve_job_def("document_batch_job"), request.run_config)
    monkeypatch.setenv("BATCH_PIPELINE_SWEEP_SOURCE", str(tmp_path / "missing"))
    assert isinstance(nightly_compliance_sweep(context), dg.SkipReason)


class _RedirectingWebhook(http.server.BaseHTTPRequestHandler):
    gets: list[str] = []

    def do_POST(self):
        self.send_response(302)
        self.send_header("Location", "/elsewhere")
        self.end_headers()

    def do_GET(self):
        self.gets.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_webhook_that_redirects_is_an_error_not_a_silent_get():
    server = http.server.HTTPServer(("127.0.0.1", 0), _RedirectingWebhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(urllib.error.HTTPError, match="302"):
            post_json(f"http://127.0.0.1:{server.server_port}/hook", {"text": "run failed"})
    finally:
        server.shutdown()
    assert _RedirectingWebhook.gets == []  # the message was not turned into a body-less GET
