"""`batch-pipeline worker` refuses to start without what it needs, and starts the worker the runs expect."""

import subprocess
import sys

import pytest

from batch_pipeline.workers.celery_settings import celery_settings, worker_app_settings
from batch_pipeline.workers.worker import (
    WorkerRefused,
    check_can_start,
    redacted,
    worker_command,
    write_worker_settings,
)
from batch_pipeline_tests.conftest import BATCH_PIPELINE

UNREACHABLE_BROKER = "pyamqp://guest:s3cret@127.0.0.1:1//"


def test_refuses_without_dagster_home():
    with pytest.raises(WorkerRefused, match="set DAGSTER_HOME"):
        check_can_start(None, UNREACHABLE_BROKER)


def test_refuses_an_unreachable_broker_without_showing_its_password(tmp_path):
    with pytest.raises(WorkerRefused, match="cannot reach the Celery broker") as refused:
        check_can_start(str(tmp_path), UNREACHABLE_BROKER)
    assert "s3cret" not in str(refused.value) and "guest:***@127.0.0.1:1" in str(refused.value)


def test_the_command_says_why_it_refuses(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DAGSTER_HOME": str(tmp_path), "BATCH_PIPELINE_CELERY_BROKER": UNREACHABLE_BROKER}
    done = subprocess.run([BATCH_PIPELINE, "worker"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "cannot reach the Celery broker" in done.stderr and "s3cret" not in done.stderr


def test_worker_command_takes_the_queues_name_and_concurrency_on_threads():
    command = worker_command("w1", ["high", "low"], 3)
    assert command[:3] == [sys.executable, "-m", "celery"]
    assert command[3:6] == ["--app", "dagster_celery.app", "worker"]
    options = dict(zip(command[6::2], command[7::2], strict=True))
    assert options["--queues"] == "high,low"
    assert options["--hostname"] == "w1@%h"
    assert options["--concurrency"] == "3"
    assert options["--pool"] == "threads"
    assert options["--prefetch-multiplier"] == "1"


def test_worker_settings_are_read_from_the_environment_and_match_the_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCH_PIPELINE_CELERY_BROKER", "pyamqp://worker:pw@broker.internal//")
    monkeypatch.setenv("BATCH_PIPELINE_CELERY_QUEUE", "nightly")
    folder = write_worker_settings(str(tmp_path))
    assert "pw" not in (folder / "dagster_celery_config.py").read_text()  # the secret stays in the environment
    code = "import dagster_celery_config as c; print(c.broker_url, c.task_acks_late, c.task_default_queue)"
    done = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["pyamqp://worker:pw@broker.internal//", "True", "nightly"]
    assert worker_app_settings() == {
        "broker_url": "pyamqp://worker:pw@broker.internal//",
        "result_backend": "rpc://",
        **celery_settings("nightly"),
    }


def test_redacted_hides_only_the_password():
    assert redacted("amqp://user:pw@host:5672/vhost") == "amqp://user:***@host:5672/vhost"
    assert redacted("amqp://host//") == "amqp://host//"
