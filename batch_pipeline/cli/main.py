"""The ``batch-pipeline`` command: inspect runs' results and status, list models, check a run
config or estimate its cost, submit to a webserver, resume a dead run, start a Celery worker."""

import argparse
import contextlib
import functools
import itertools
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from batch_pipeline.context import ProcessingContext
from batch_pipeline.defs.tags import MAX_RUNTIME_TAG


def cmd_results(args: argparse.Namespace) -> int:
    from batch_pipeline.cli import local

    store = local.open_store()
    rows = store.results(args.run_id)
    if rows.empty:
        print(f"No results for run {args.run_id} in the store at {local.display_url(store.url)}", file=sys.stderr)
        return 1
    local.print_results(rows, args.format)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from batch_pipeline.cli import local

    return local.print_runs(args.project, args.model_key, args.ai_model, args.limit, args.format)


def cmd_status(args: argparse.Namespace) -> int:
    from batch_pipeline.cli import local, remote
    from batch_pipeline.store.provider_batches import batches_of_run

    if args.watch:
        return _watch_status(args)

    try:
        status = remote.remote_run_status(args.url, args.run_id) if args.url else local.dagster_run_status(args.run_id)
    except remote.WebserverUnreachable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    store = local.open_store()
    counts = store.status_counts(args.run_id)
    print(f"run_id: {args.run_id}")
    print(f"dagster_status: {status}")
    print(f"documents: {sum(counts.values())}")
    for name, count in counts.items():
        print(f"  {name}: {count}")
    for batch in batches_of_run(store, args.run_id):
        progress = ", ".join(f"{name} {n}" for name, n in (batch.request_counts or {}).items())
        unsent = "(none created)" if batch.state == "abandoned" else "(being created)"
        print(f"batch: {batch.batch_id or unsent} {batch.provider_status or batch.state}")
        print(f"  documents: {len(batch.document_ids)}, round {batch.round}" + (f", {progress}" if progress else ""))
    return 0


def _watch_status(args: argparse.Namespace) -> int:
    import time

    import dagster as dg

    from batch_pipeline.cli import local, remote
    from batch_pipeline.cli.watch import Snapshot, watch

    if not args.url and not os.environ.get("DAGSTER_HOME"):
        print("error: set DAGSTER_HOME to the instance that runs the batch, or give --url", file=sys.stderr)
        return 2
    store = local.open_store()
    with contextlib.ExitStack() as stack:
        if args.url:
            progress = functools.partial(remote.remote_run_progress, args.url, args.run_id)
        else:
            instance = stack.enter_context(dg.DagsterInstance.get())
            progress = functools.partial(local.run_progress, instance, args.run_id)

        def read() -> Snapshot:
            status, running = progress()
            return Snapshot(status, store.status_counts(args.run_id), running, time.monotonic())

        try:
            return watch(args.run_id, read, interval_seconds=args.interval)
        except (LookupError, remote.WebserverUnreachable) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2


def cmd_resume(args: argparse.Namespace) -> int:
    import dagster as dg

    from batch_pipeline.cli import local
    from batch_pipeline.cli.recovery import CannotResume, resume

    if not os.environ.get("DAGSTER_HOME"):
        print("error: set DAGSTER_HOME to the instance that ran the batch", file=sys.stderr)
        return 2
    store = local.open_store()
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


def cmd_submit(args: argparse.Namespace) -> int:
    from batch_pipeline.cli import local, remote

    # One isolated run per context: every combination of the keys, models and instructions given.
    contexts = [
        ProcessingContext(model_key=key, ai_model=model, custom_instructions=instructions)
        for key, model, instructions in itertools.product(
            dict.fromkeys(args.model_key), dict.fromkeys(args.ai_model), dict.fromkeys(args.instructions or [""])
        )
    ]
    submissions, problems = [], []
    for context in contexts:
        run_config, tags = remote.submission(
            args.project, str(Path(args.path).resolve()), context, args.priority, args.executor
        )
        found = local.launch_problems(run_config)  # all at once, before the webserver sees any run
        label = f"{context.model_key} / {context.ai_model}: " if len(contexts) > 1 else ""
        problems += [label + problem for problem in found]
        if args.max_runtime is not None:
            tags[MAX_RUNTIME_TAG] = str(args.max_runtime)
        submissions.append((run_config, tags))
    for problem in dict.fromkeys(problems):
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 2
    run_ids = []
    webserver = args.url or os.environ.get("DAGSTER_WEBSERVER_URL") or "http://127.0.0.1:3000"
    for run_config, tags in submissions:
        try:
            run_ids.append(remote.submit(webserver, run_config, tags))
        except remote.WebserverUnreachable as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except remote.RunRefused as e:
            print(f"error: the webserver refused the run: {e}", file=sys.stderr)
            return 1
        print(run_ids[-1], flush=True)
    if len(run_ids) > 1:
        print(f"compare them, once they end, with: batch-pipeline compare {' '.join(run_ids)}", file=sys.stderr)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from batch_pipeline.workers.worker import WorkerRefused, exec_worker

    try:
        exec_worker(args.name, [q.strip() for q in args.queues.split(",") if q.strip()], args.concurrency)
    except WorkerRefused as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0  # not reached: the worker replaced this process


def cmd_init(args: argparse.Namespace) -> int:
    from batch_pipeline.cli.instance import NoDagsterHome, init_home

    try:
        home = init_home(Path(args.config) if args.config else None)
    except NoDagsterHome as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"initialised the Dagster instance and the document store for DAGSTER_HOME={home}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from batch_pipeline.cli import analyses

    return analyses.list_analyses(args.format)


def cmd_compare(args: argparse.Namespace) -> int:
    from batch_pipeline.cli import evaluation, local

    run_ids = list(args.run_ids)
    if args.launched_by:
        try:
            run_ids += local.runs_launched_by(args.launched_by)
        except LookupError as e:
            print(f"error: {e.args[0]}", file=sys.stderr)
            return 2
    if len(run_ids) < 2:
        print("error: compare needs two runs or more (RUN_ID ..., or --launched-by)", file=sys.stderr)
        return 2
    return evaluation.compare_runs(run_ids, args.format)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from batch_pipeline.cli import evaluation

    return evaluation.evaluate_run(args.run_id, Path(args.labels), args.format)


def cmd_try_analysis(args: argparse.Namespace) -> int:
    from batch_pipeline.cli import analyses

    document = Path(args.document) if args.document else None
    return analyses.try_definition(Path(args.file), document, args.instructions, args.format)


def cmd_check(args: argparse.Namespace) -> int:
    from batch_pipeline.cli import local

    try:
        run_config = local.read_run_config(Path(args.config))
    except local.BadRunConfigFile as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    problems = local.config_problems(run_config)
    if not problems and args.provider:
        problems = local.provider_problems(run_config)
    for broken in local.broken_analyses():
        print(f"warning: an analysis definition is not loaded: {broken}", file=sys.stderr)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        asked = args.provider and local.names_an_llm(run_config)
        checked = " (the provider accepts the key and serves the model)" if asked else ""
        print(f"{args.config}: valid run config for document_batch_job{checked}")
    return 1 if problems else 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from batch_pipeline.cli import local

    try:
        run_config = local.read_run_config(Path(args.config))
        estimate = local.estimate(run_config)
    except local.BadRunConfigFile as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except local.CannotEstimate as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(estimate.model_dump_json(indent=2) if args.format == "json" else estimate.summary())
    for problem in local.llm_needs(run_config):
        print(f"note: {problem}", file=sys.stderr)
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class _HelpFormatter(argparse.HelpFormatter):
    """Each option's default after its help, where it has one worth stating (not None, not a flag's)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        stated = "default" in help_text or not action.option_strings
        if not stated and action.default not in (None, False, argparse.SUPPRESS, ""):
            help_text += " (default: %(default)s)"
        return help_text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batch-pipeline",
        description="Inspect runs' results and status, list the analyses, check a run config or estimate its "
        "cost, submit batches to a webserver, compare and evaluate runs, resume a dead run, start a Celery worker. "
        "`batch-pipeline COMMAND --help` explains each command.",
        formatter_class=_HelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser = functools.partial(commands.add_parser, formatter_class=_HelpFormatter)

    results = commands.add_parser("results", help="print one row per document of a run")
    results.add_argument("run_id", help="the run's id (Dagster's run id, as submit prints it)")
    results.add_argument("--format", choices=["jsonl", "csv"], default="jsonl", help="one JSON object per line, or CSV")
    results.set_defaults(handler=cmd_results)

    runs = commands.add_parser("runs", help="list the latest runs the document store knows, newest first")
    runs.add_argument("--project", help="only this project's runs")
    runs.add_argument("--model-key", help="only runs of this analysis")
    runs.add_argument("--ai-model", help="only runs of this model ('local': the offline analysers)")
    runs.add_argument("--limit", type=_positive, default=20, help="at most this many runs")
    runs.add_argument("--format", choices=["table", "json"], default="table", help="a table for people, or JSON lines")
    runs.set_defaults(handler=cmd_runs)

    status = commands.add_parser("status", help="print a run's Dagster status and document counts per status")
    status.add_argument("run_id", help="the run's id")
    status.add_argument("--url", help="read the status from this Dagster webserver (default: the local $DAGSTER_HOME)")
    status.add_argument(
        "--watch",
        action="store_true",
        help="a live view until the run ends (documents per status, docs/s, ETA, running partitions); "
        "exit code 0 success, 1 failure, 3 canceled",
    )
    status.add_argument("--interval", type=float, default=1.0, help="seconds between redraws with --watch")
    status.set_defaults(handler=cmd_status)

    resume = commands.add_parser(
        "resume", help="finish a batch whose run died: mark it failed and run the same batch again"
    )
    resume.add_argument("run_id", help="the id of the failed, canceled or dead run")
    resume.set_defaults(handler=cmd_resume)

    submit = commands.add_parser("submit", help="submit a batch as a queued run to a running Dagster webserver")
    submit.add_argument(
        "path",
        help="a folder of documents (text, markdown, PDF, Office, HTML, e-mail, images) or a .jsonl file; the run "
        "reads it, so it must lie in a folder the deployment allows ($BATCH_PIPELINE_SOURCE_ROOTS)",
    )
    submit.add_argument(
        "--model-key", required=True, action="append",
        help="an analysis the deployment loaded (batch-pipeline models); repeat it, --ai-model or --instructions "
        "to submit one run per combination (each prints its run id), to compare",
    )  # fmt: skip
    submit.add_argument(
        "--ai-model", required=True, action="append", help="the LLM name, or 'local' for the offline analysers"
    )
    submit.add_argument("--instructions", action="append", help="custom_instructions (default none)")
    submit.add_argument(
        "--priority",
        choices=["high", "normal", "low"],
        default="normal",
        help="orders the run in Dagster's run queue and, on Celery, its steps on the broker",
    )
    submit.add_argument(
        "--executor",
        choices=["in_process", "multiprocess", "celery"],
        help="where the run's steps execute (default: in_process); celery: on `batch-pipeline worker` processes",
    )
    submit.add_argument(
        "--max-runtime",
        type=int,
        help="seconds after which run monitoring stops the run (the dagster/max_runtime tag): a Celery run "
        "whose workers are all gone would otherwise wait for them forever",
    )
    submit.add_argument("--project", default="default", help="the project the documents' records belong to")
    submit.add_argument(
        "--url",
        help="the Dagster webserver (default: $DAGSTER_WEBSERVER_URL, else http://127.0.0.1:3000)",
    )
    submit.set_defaults(handler=cmd_submit)

    worker = commands.add_parser(
        "worker",
        help="start a Celery worker for runs with the celery executor (broker and backend: "
        "$BATCH_PIPELINE_CELERY_BROKER, $BATCH_PIPELINE_CELERY_BACKEND; needs $DAGSTER_HOME)",
    )
    worker.add_argument("--name", help="the worker's name (NAME@host); default: batch-pipeline-<random>")
    worker.add_argument(
        "--queues",
        default="",
        help="comma-separated queues to take steps from (default: $BATCH_PIPELINE_CELERY_QUEUE, else dagster)",
    )
    worker.add_argument("--concurrency", type=int, default=1, help="steps this worker runs at once (default 1)")
    worker.set_defaults(handler=cmd_worker)

    init = commands.add_parser(
        "init", help="create $DAGSTER_HOME's storage once, before runs are launched in it (safe to repeat)"
    )
    init.add_argument("--config", help="a dagster.yaml to copy into $DAGSTER_HOME when it has none yet")
    init.set_defaults(handler=cmd_init)

    models = commands.add_parser(
        "models", help="list the analyses (model_key values) this deployment loads, and the definitions it cannot"
    )
    models.add_argument("--format", choices=["text", "json"], default="text", help="lines for people, or JSON")
    models.set_defaults(handler=cmd_models)

    compare = commands.add_parser(
        "compare", help="runs of one analysis over the same documents: agreement per field, cost and latency"
    )
    compare.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="two or more; each is compared with the first")
    compare.add_argument(
        "--launched-by",
        metavar="RUN_ID",
        help="also the runs a compare_contexts_job run launched from the UI, in its contexts' order",
    )
    compare.add_argument(
        "--format",
        choices=["table", "json", "csv", "html"],
        default="table",
        help="Markdown tables, JSON, CSV, or one self-contained HTML page with charts",
    )
    compare.set_defaults(handler=cmd_compare)

    evaluate = commands.add_parser("evaluate", help="a run scored against labelled answers, field by field")
    evaluate.add_argument("run_id", help="the run to score")
    evaluate.add_argument(
        "--labels", required=True, help='JSONL: {"filename" or "sha256": ..., "expected": {field: value}}'
    )
    evaluate.add_argument(
        "--format",
        choices=["table", "json", "csv", "html"],
        default="table",
        help="Markdown tables, JSON, CSV, or one self-contained HTML page with charts",
    )
    evaluate.set_defaults(handler=cmd_evaluate)

    try_analysis = commands.add_parser(
        "try-analysis",
        help="validate an analysis definition file, and show the messages it would send for a sample document",
    )
    try_analysis.add_argument("file", help="the definition file (YAML)")
    try_analysis.add_argument(
        "--document", help="a document to render the prompt for (text, markdown or any file read at ingest)"
    )
    try_analysis.add_argument("--instructions", default="", help="custom_instructions to hand the prompt")
    try_analysis.add_argument("--format", choices=["text", "json"], default="text", help="lines for people, or JSON")
    try_analysis.set_defaults(handler=cmd_try_analysis)

    check = commands.add_parser("check", help="validate a run config file without launching anything")
    check.add_argument("config", help="the run config YAML file (as for the Launchpad or dagster job execute -c)")
    check.add_argument(
        "--provider",
        action="store_true",
        help="also ask the LLM provider whether it accepts the key and serves ai_model (sends no document)",
    )
    check.set_defaults(handler=cmd_check)

    estimate = commands.add_parser(
        "estimate", help="what a run config's batch would cost, without sending anything (cached documents excluded)"
    )
    estimate.add_argument("config", help="the run config YAML file")
    estimate.add_argument("--format", choices=["text", "json"], default="text", help="lines for people, or JSON")
    estimate.set_defaults(handler=cmd_estimate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
