"""Talking to a running Dagster webserver over GraphQL: submit a batch, ask a run's status."""

import http.client
import json
import urllib.error
import urllib.request
from urllib.parse import urlparse

from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from batch_pipeline.context import ProcessingContext
from batch_pipeline.defs.config import batch_run_config
from batch_pipeline.defs.job import document_batch_job
from batch_pipeline.defs.tags import run_tags

REACHABILITY_TIMEOUT_SECONDS = 10


class WebserverUnreachable(Exception):
    pass


class RunRefused(Exception):
    """The webserver refused the run (its config or the job)."""


def reachable_base_url(url: str) -> str:
    """http[s]://host:port of the webserver at url, after checking that it answers (the GraphQL
    client's own errors for an unreachable server are long and vague)."""
    parsed = urlparse(url if "://" in url else f"http://{url}")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    base = f"{parsed.scheme}://{parsed.hostname}:{port}"
    try:
        with urllib.request.urlopen(f"{base}/server_info", timeout=REACHABILITY_TIMEOUT_SECONDS):
            pass
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        raise WebserverUnreachable(f"cannot reach the Dagster webserver at {base}: {e}") from None
    return base


def graphql_client(url: str) -> DagsterGraphQLClient:
    """A client for the webserver at url, once it answers."""
    parsed = urlparse(reachable_base_url(url))
    return DagsterGraphQLClient(parsed.hostname, port_number=parsed.port, use_https=parsed.scheme == "https")


RUN_PROGRESS_QUERY = """query RunProgress($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status stepStats { stepKey status } } }
}"""


def remote_run_progress(url: str, run_id: str) -> tuple[str, list[str]]:
    """(the run's Dagster status, the steps running now), from the webserver."""
    request = urllib.request.Request(
        f"{reachable_base_url(url)}/graphql",
        data=json.dumps({"query": RUN_PROGRESS_QUERY, "variables": {"runId": run_id}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=REACHABILITY_TIMEOUT_SECONDS) as response:
        run = json.load(response)["data"]["runOrError"]
    if run["__typename"] != "Run":
        raise LookupError(f"run {run_id} is not known to the webserver at {url} ({run['__typename']})")
    return run["status"], [step["stepKey"] for step in run["stepStats"] if step["status"] == "IN_PROGRESS"]


def remote_run_status(url: str, run_id: str) -> str:
    client = graphql_client(url)
    try:
        return client.get_run_status(run_id).value
    except DagsterGraphQLClientError as e:
        return f"unknown ({e})"


def submission(
    project: str, path: str, context: ProcessingContext, priority: str, executor: str | None = None
) -> tuple[dict, dict[str, str]]:
    """The run config and tags of a submitted batch."""
    return batch_run_config(project, path, context, executor), run_tags(context, priority, project)


def submit(url: str, run_config: dict, tags: dict[str, str]) -> str:
    """Submit a queued run of the job; its run id."""
    client = graphql_client(url)
    try:
        return client.submit_job_execution(document_batch_job.name, run_config=run_config, tags=tags)
    except DagsterGraphQLClientError as e:
        raise RunRefused(str(e)) from e
