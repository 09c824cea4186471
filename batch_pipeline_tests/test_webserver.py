"""The UI path: dagster-webserver and dagster-daemon load workspace.yaml; a run launched through
the webserver's GraphQL API (what the Launchpad does) is queued, started and succeeds."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from dagster_graphql import DagsterGraphQLClient

from batch_pipeline.store import DocumentStore
from batch_pipeline_tests.conftest import EXAMPLE_DOCS, REPO_ROOT, batch_config

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["data"]


def wait_for_webserver(port: int, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "dagster-webserver exited"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("dagster-webserver did not answer")


@pytest.fixture
def dagster_services(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCH_PIPELINE_")}
    env["DAGSTER_HOME"] = str(home)
    port = free_port()
    logs = (tmp_path / "webserver.log").open("w"), (tmp_path / "daemon.log").open("w")
    webserver = subprocess.Popen(
        [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO_ROOT, env=env, stdout=logs[0], stderr=subprocess.STDOUT,
    )  # fmt: skip
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=REPO_ROOT, env=env, stdout=logs[1], stderr=subprocess.STDOUT,
    )  # fmt: skip
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    try:
        wait_for_webserver(port, webserver)
        yield client, port, home
    finally:
        for process in (daemon, webserver):
            process.terminate()
        for process in (daemon, webserver):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()


def test_code_location_loads_and_a_launched_run_succeeds(dagster_services):
    client, port, home = dagster_services
    locations = graphql(
        port,
        "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
        "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
    )["workspaceOrError"]["locationEntries"]
    assert [(e["name"], e["loadStatus"], e["locationOrLoadError"]["__typename"]) for e in locations] == [
        ("batch_pipeline", "LOADED", "RepositoryLocation")
    ]

    run_id = client.submit_job_execution("document_batch_job", run_config=batch_config(str(EXAMPLE_DOCS)))
    deadline = time.monotonic() + 180
    status = None
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id).value
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    assert status == "SUCCESS"
    store = DocumentStore(f"sqlite:///{home / 'batch_pipeline' / 'store.sqlite'}")
    assert store.status_counts(run_id) == {"empty": 1, "ok": 12}
    store.close()
