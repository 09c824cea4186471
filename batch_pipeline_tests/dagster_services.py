"""Dagster's own processes for the tests that need them: dagster-webserver and dagster-daemon on a
DAGSTER_HOME of the test's, its GraphQL API, and the shipped PostgreSQL instance config."""

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from dagster_graphql import DagsterGraphQLClient

from batch_pipeline_tests.conftest import REPO_ROOT

DEPLOY_CONFIG = REPO_ROOT / "deploy" / "postgres" / "dagster.yaml"
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


@contextlib.contextmanager
def webserver_and_daemon(env: dict, tmp_path: Path) -> Iterator[str]:
    """dagster-webserver (what submit talks to) and dagster-daemon (queue, run monitoring); their URL."""
    # The instance's storage first, as docs/guide/launching.md says for several processes on a new DAGSTER_HOME: the
    # webserver and the daemon starting together on empty SQLite storage race to stamp its schema.
    init = subprocess.run([str(BIN / "batch-pipeline"), "init"], env=env, capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stdout + init.stderr
    port = free_port()
    logs = (tmp_path / "webserver.log").open("w"), (tmp_path / "daemon.log").open("w")
    processes = [
        subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO_ROOT, env=env, stdout=logs[0], stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=REPO_ROOT, env=env, stdout=logs[1], stderr=subprocess.STDOUT,
        ),
    ]  # fmt: skip
    try:
        wait_for_webserver(port, processes[0])
        yield f"http://127.0.0.1:{port}"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()


@dataclass
class Services:
    client: DagsterGraphQLClient
    port: int
    home: Path
    env: dict
    inbox: Path


def wait_for_status(get_status, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = get_status()
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(1)
    return status


def postgres_home(path: Path, max_concurrent_runs: int | None = None, per_model_limit: int | None = None) -> Path:
    """A DAGSTER_HOME holding the shipped PostgreSQL instance config, optionally with other limits."""
    config = yaml.safe_load(DEPLOY_CONFIG.read_text())
    if max_concurrent_runs is not None:
        config["concurrency"]["runs"]["max_concurrent_runs"] = max_concurrent_runs
    if per_model_limit is not None:
        config["concurrency"]["runs"]["tag_concurrency_limits"][0]["limit"] = per_model_limit
    path.mkdir()
    (path / "dagster.yaml").write_text(yaml.safe_dump(config))
    return path
