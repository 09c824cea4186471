"""The UI path: dagster-webserver and dagster-daemon load workspace.yaml; a run launched through
the webserver's GraphQL API (what the Launchpad does) is queued, started and succeeds."""

import json
import os
import re
import signal
import subprocess
import time

import pytest
import yaml
from dagster_graphql import DagsterGraphQLClient

from batch_pipeline.store import DocumentStore
from batch_pipeline_tests.conftest import (
    EXAMPLE_COUNT,
    EXAMPLE_DOCS,
    REPO_ROOT,
    batch_config,
)
from batch_pipeline_tests.dagster_services import BIN, Services, free_port, graphql, wait_for_status, wait_for_webserver

# One worker runs every module using the session's webserver and daemon (conftest: dagster_services).
pytestmark = pytest.mark.xdist_group("dagster_services")


def test_code_location_loads_and_a_launched_run_succeeds(dagster_services):
    client, port, home = dagster_services.client, dagster_services.port, dagster_services.home
    locations = graphql(
        port,
        "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
        "locationOrLoadError { __typename ... on PythonError { message } } } } } }",
    )["workspaceOrError"]["locationEntries"]
    assert [(e["name"], e["loadStatus"], e["locationOrLoadError"]["__typename"]) for e in locations] == [
        ("batch_pipeline", "LOADED", "RepositoryLocation")
    ]

    run_id = client.submit_job_execution("document_batch_job", run_config=batch_config(str(EXAMPLE_DOCS)))
    assert wait_for_status(lambda: client.get_run_status(run_id).value) == "SUCCESS"
    store = DocumentStore(f"sqlite:///{home / 'batch_pipeline' / 'store.sqlite'}")
    assert store.status_counts(run_id) == {"empty": 1, "ok": EXAMPLE_COUNT - 1}
    store.close()

    # The analysed batch has a definition (not an "External Asset" known only from events), a
    # partition per project, and the run's materialization with the numbers the UI plots.
    (node,) = graphql(
        port,
        '{ assetNodes(assetKeys: [{path: ["batch_pipeline", "analysed_documents"]}]) { description '
        "partitionDefinition { type } partitionKeys "
        "assetMaterializations(limit: 1) { runId partition metadataEntries { label __typename } } } }",
    )["assetNodes"]
    assert node["description"].startswith("The documents of a project analysed")
    # Other modules' runs share these services (conftest: dagster_services): their projects are there too.
    assert node["partitionDefinition"]["type"] == "DYNAMIC" and node["partitionKeys"].count("test") == 1
    (materialization,) = node["assetMaterializations"]
    assert (materialization["runId"], materialization["partition"]) == (run_id, "test")
    kinds = {e["label"]: e["__typename"] for e in materialization["metadataEntries"]}
    assert kinds["ok"] == kinds["failed"] == "IntMetadataEntry" and kinds["docs_per_second"] == "FloatMetadataEntry"


def cli(services: Services, *args: str) -> subprocess.CompletedProcess:
    env = {**services.env, "BATCH_PIPELINE_HOME": str(services.home / "batch_pipeline")}
    return subprocess.run([str(BIN / "batch-pipeline"), *args], env=env, capture_output=True, text=True, timeout=60)


def test_batch_pipeline_submit_and_status_against_the_webserver(dagster_services):
    url = f"http://127.0.0.1:{dagster_services.port}"
    submitted = cli(
        dagster_services, "submit", str(EXAMPLE_DOCS), "--model-key", "document_metadata", "--ai-model", "local",
        "--instructions", "From CI.", "--priority", "high", "--project", "submitted", "--url", url,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()

    watched = cli(dagster_services, "status", run_id, "--url", url, "--watch", "--interval", "0.5")
    assert watched.returncode == 0, watched.stderr  # it followed the run to its end, over GraphQL
    assert f"{EXAMPLE_COUNT} of {EXAMPLE_COUNT} done" in watched.stdout and "SUCCESS" in watched.stdout
    out = cli(dagster_services, "status", run_id, "--url", url).stdout
    assert f"documents: {EXAMPLE_COUNT}" in out and f"  ok: {EXAMPLE_COUNT - 1}" in out
    tags = graphql(
        dagster_services.port, f'{{ runOrError(runId: "{run_id}") {{ ... on Run {{ tags {{ key value }} }} }} }}'
    )
    tag_map = {t["key"]: t["value"] for t in tags["runOrError"]["tags"]}
    assert tag_map["dagster/priority"] == "10" and tag_map["batch_pipeline/model_key"] == "document_metadata"


def test_one_submit_launches_one_isolated_run_per_context_and_names_the_compare_command(dagster_services):
    url = f"http://127.0.0.1:{dagster_services.port}"
    submitted = cli(
        dagster_services, "submit", str(EXAMPLE_DOCS), "--model-key", "content_compliance", "--ai-model", "local",
        "--instructions", "", "--instructions", "Only secrets matter.", "--project", "two-contexts", "--url", url,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    run_ids = submitted.stdout.split()
    assert len(run_ids) == 2 and f"batch-pipeline compare {run_ids[0]} {run_ids[1]}" in submitted.stderr
    for run_id, instructions in zip(run_ids, ["", "Only secrets matter."], strict=True):
        watched = cli(dagster_services, "status", run_id, "--url", url, "--watch", "--interval", "0.5")
        assert watched.returncode == 0, watched.stderr
        rows = json.loads("[" + ",".join(cli(dagster_services, "results", run_id).stdout.splitlines()) + "]")
        assert {row["custom_instructions"] for row in rows} == {instructions}  # each run its own context
    compared = cli(dagster_services, "compare", *run_ids, "--format", "json")
    assert compared.returncode == 0, compared.stderr
    [pair] = json.loads(compared.stdout)["pairs"]
    # The same offline analyser over the same documents, registered once for both runs: no disagreement.
    assert pair["documents_in_both"] == EXAMPLE_COUNT and pair["agree_entirely_share"] == 1.0


def test_submit_reports_an_unreachable_server_and_a_refused_config(dagster_services, tmp_path):
    down = cli(
        dagster_services,
        "submit",
        str(EXAMPLE_DOCS),
        "--model-key",
        "content_compliance",
        "--ai-model",
        "local",
        "--url",
        "http://127.0.0.1:9",
    )
    assert down.returncode == 2 and "cannot reach the Dagster webserver" in down.stderr
    bad = cli(dagster_services, "submit", str(EXAMPLE_DOCS), "--model-key", "sentiment", "--ai-model", "local")
    assert (
        bad.returncode == 2
        and "is not an analysis this deployment has; use one of: content_compliance, document_metadata" in bad.stderr
    )


def test_inbox_sensor_end_to_end(dagster_services):
    inbox = dagster_services.inbox
    inbox.mkdir()
    try:
        _inbox_sensor_requests_a_run_that_succeeds(dagster_services, inbox)
    finally:  # the services outlive this test: a sensor ticking every second would cost the others CPU
        subprocess.run(
            [str(BIN / "dagster"), "sensor", "stop", "inbox_sensor", "-w", "workspace.yaml"],
            cwd=REPO_ROOT, env=dagster_services.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip


def _inbox_sensor_requests_a_run_that_succeeds(dagster_services, inbox) -> None:
    started = subprocess.run(
        [str(BIN / "dagster"), "sensor", "start", "inbox_sensor", "-w", "workspace.yaml"],
        cwd=REPO_ROOT, env=dagster_services.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    (inbox / "batch.yaml").write_text(
        "model_key: content_compliance\nai_model: local\ncustom_instructions: From the inbox.\n"
    )
    (inbox / "memo.md").write_text("# Memo\n\nCall +1 415 555 0132.")
    (inbox / "notes.txt").write_text("Plain notes, nothing sensitive.")
    deadline = time.monotonic() + 120
    runs = []
    while time.monotonic() < deadline and not runs:
        time.sleep(1)
        data = graphql(
            dagster_services.port,
            '{ runsOrError(filter: {tags: [{key: "batch_pipeline/trigger", value: "inbox_sensor"}]}) { ... on Runs { results { runId status } } } }',
        )
        runs = data["runsOrError"]["results"]
    assert len(runs) == 1, "the sensor did not request a run"
    run_id = runs[0]["runId"]
    assert wait_for_status(lambda: dagster_services.client.get_run_status(run_id).value) == "SUCCESS"
    out = cli(dagster_services, "status", run_id).stdout
    assert "documents: 2" in out and "  ok: 2" in out


def test_make_dev_starts_without_warnings_and_runs_the_examples_as_written(tmp_path):
    """What a new user sees first: `make dev` serves the UI, warns about nothing (not the instance
    config's location, not `dg dev`), and a pasted example's relative source is found."""
    port = free_port()
    command = ["make", "--no-print-directory", "-C", str(REPO_ROOT), "dev",
               f"LOCAL_DAGSTER_HOME={tmp_path / 'home'}", f"DEV_ARGS=-p {port}"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "BATCH_PIPELINE_", "PYTHONWARNINGS"))}
    log = tmp_path / "make_dev.log"
    with log.open("w") as out:
        dev = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_webserver(port, dev)
        client = DagsterGraphQLClient("127.0.0.1", port_number=port)
        example = yaml.safe_load((REPO_ROOT / "examples" / "compliance_local.yaml").read_text())
        run_id = client.submit_job_execution("document_batch_job", run_config=example)
        status = wait_for_status(lambda: client.get_run_status(run_id).value)
    finally:
        os.killpg(dev.pid, signal.SIGINT)  # Ctrl-C, as a user stops it
        try:
            dev.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait(timeout=30)
    output = log.read_text()
    assert status == "SUCCESS", output[-3000:]
    warnings = [line for line in output.splitlines() if re.search(r" - WARNING - |\w+Warning: ", line)]
    assert warnings == []
