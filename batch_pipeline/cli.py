"""The ``batch-pipeline`` command: inspect runs' results and status, list models, check a run config."""

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import httpx
import yaml

from batch_pipeline import settings
from batch_pipeline.analysis_models import REGISTRY
from batch_pipeline.store import DocumentStore

CONFIG_PATH = ("ops", "create_document_records", "config")


def _store() -> DocumentStore:
    return DocumentStore(settings.database_url())


def cmd_results(args: argparse.Namespace) -> int:
    store = _store()
    store.create_schema()
    rows = store.results(args.run_id)
    if rows.empty:
        print(f"No results for run {args.run_id} in the store at {_display_url(store.url)}", file=sys.stderr)
        return 1
    rows = rows.astype(object).where(rows.notna(), None)
    if args.format == "csv":
        rows.to_csv(sys.stdout, index=False)
    else:
        for record in rows.to_dict(orient="records"):
            record["result"] = json.loads(record["result"]) if record["result"] else None
            print(json.dumps(record, ensure_ascii=False))
    return 0


def dagster_run_status(run_id: str) -> str:
    if not os.environ.get("DAGSTER_HOME"):
        return "unknown (DAGSTER_HOME is not set, so there is no persistent Dagster instance to ask)"
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        return run.status.value if run else f"not found in the Dagster instance at {os.environ['DAGSTER_HOME']}"


def _graphql_client(url: str):
    from urllib.parse import urlparse

    from dagster_graphql import DagsterGraphQLClient

    parsed = urlparse(url if "://" in url else f"http://{url}")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    base = f"{parsed.scheme}://{parsed.hostname}:{port}"
    try:
        httpx.get(f"{base}/server_info", timeout=10).raise_for_status()
    except httpx.HTTPError as e:
        raise WebserverUnreachable(f"cannot reach the Dagster webserver at {base}: {e}") from None
    return DagsterGraphQLClient(parsed.hostname, port_number=port, use_https=parsed.scheme == "https")


class WebserverUnreachable(Exception):
    pass


def remote_run_status(url: str, run_id: str) -> str:
    from dagster_graphql import DagsterGraphQLClientError

    client = _graphql_client(url)
    try:
        return client.get_run_status(run_id).value
    except DagsterGraphQLClientError as e:
        return f"unknown ({e})"


def cmd_status(args: argparse.Namespace) -> int:
    try:
        dagster_status = remote_run_status(args.url, args.run_id) if args.url else dagster_run_status(args.run_id)
    except WebserverUnreachable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    store = _store()
    store.create_schema()
    counts = store.status_counts(args.run_id)
    print(f"run_id: {args.run_id}")
    print(f"dagster_status: {dagster_status}")
    print(f"documents: {sum(counts.values())}")
    for status, count in counts.items():
        print(f"  {status}: {count}")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from batch_pipeline.recovery import CannotResume, resume

    if not os.environ.get("DAGSTER_HOME"):
        print("error: set DAGSTER_HOME to the instance that ran the batch", file=sys.stderr)
        return 2
    store = _store()
    store.create_schema()
    with dg.DagsterInstance.get() as instance:
        try:
            result = resume(instance, store, args.run_id)
        except CannotResume as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    print(f"resumed_as: {result.run_id}")
    print(f"dagster_status: {'SUCCESS' if result.success else 'FAILURE'}")
    for status, count in store.status_counts(result.run_id).items():
        print(f"  {status}: {count}")
    return 0 if result.success else 1


def submission(args: argparse.Namespace) -> tuple[dict, dict[str, str]]:
    """The run config and tags for `submit`, from its arguments."""
    from batch_pipeline.context import ModelKey, ProcessingContext, batch_run_config

    context = ProcessingContext(model_key=ModelKey[args.model_key], ai_model=args.ai_model, custom_instructions=args.instructions)
    return batch_run_config(args.project, str(Path(args.path).resolve()), context), context.run_tags(args.priority)


def cmd_submit(args: argparse.Namespace) -> int:
    from dagster_graphql import DagsterGraphQLClientError

    if args.model_key not in REGISTRY:
        print(f"error: unknown model_key {args.model_key!r}; valid: {', '.join(REGISTRY)}", file=sys.stderr)
        return 2
    if not Path(args.path).exists():
        print(f"error: {args.path} does not exist", file=sys.stderr)
        return 2
    run_config, tags = submission(args)
    try:
        client = _graphql_client(args.url)
        run_id = client.submit_job_execution("document_batch_job", run_config=run_config, tags=tags)
    except WebserverUnreachable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except DagsterGraphQLClientError as e:
        print(f"error: the webserver refused the run: {e}", file=sys.stderr)
        return 1
    print(run_id)
    return 0


def cmd_models(_args: argparse.Namespace) -> int:
    width = max(len(key) for key in REGISTRY)
    for key, model in REGISTRY.items():
        print(f"{key:<{width}}  {model.description}")
    return 0


def config_problems(run_config: dict) -> list[str]:
    """Everything wrong with a run config for document_batch_job, with the valid choices named."""
    from batch_pipeline.batch import BatchConfig
    from batch_pipeline.definitions import defs

    try:
        dg.validate_run_config(defs.resolve_job_def("document_batch_job"), run_config)
    except dg.DagsterInvalidConfigError as e:
        problems = [error.message.split("\n\nStack Trace")[0].strip() for error in e.errors]
        if any("model_key" in p for p in problems):
            problems.append("valid model_key values: " + ", ".join(REGISTRY))
        return problems
    section = run_config
    for key in CONFIG_PATH:
        section = section[key]
    return BatchConfig(**section).problems()


def cmd_check(args: argparse.Namespace) -> int:
    run_config = yaml.safe_load(Path(args.config).read_text()) or {}
    problems = config_problems(run_config)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        print(f"{args.config}: valid run config for document_batch_job")
    return 1 if problems else 0


def _display_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batch-pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    results = commands.add_parser("results", help="print one row per document of a run")
    results.add_argument("run_id")
    results.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    results.set_defaults(handler=cmd_results)

    status = commands.add_parser("status", help="print a run's Dagster status and document counts per status")
    status.add_argument("run_id")
    status.add_argument("--url", help="read the status from this Dagster webserver (default: the local $DAGSTER_HOME)")
    status.set_defaults(handler=cmd_status)

    resume = commands.add_parser(
        "resume", help="finish a batch whose run died: mark it failed and run the same batch again"
    )
    resume.add_argument("run_id")
    resume.set_defaults(handler=cmd_resume)

    submit = commands.add_parser("submit", help="submit a batch as a queued run to a running Dagster webserver")
    submit.add_argument("path", help="a folder of .md/.txt files or a .jsonl file (must be readable by the run)")
    submit.add_argument("--model-key", required=True, help=f"one of: {', '.join(REGISTRY)}")
    submit.add_argument("--ai-model", required=True, help="the LLM name, or 'local' for the offline analysers")
    submit.add_argument("--instructions", default="", help="custom_instructions")
    submit.add_argument("--priority", choices=["high", "normal", "low"], default="normal")
    submit.add_argument("--project", default="default")
    submit.add_argument("--url", default=os.environ.get("DAGSTER_WEBSERVER_URL", "http://127.0.0.1:3000"))
    submit.set_defaults(handler=cmd_submit)

    models = commands.add_parser("models", help="list the analysis models (model_key values)")
    models.set_defaults(handler=cmd_models)

    check = commands.add_parser("check", help="validate a run config file without launching anything")
    check.add_argument("config")
    check.set_defaults(handler=cmd_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
