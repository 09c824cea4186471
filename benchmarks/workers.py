"""Issue 13's benchmark, Dagster's instance and the document store on PostgreSQL, RabbitMQ as broker,
two Celery workers of concurrency 1. Prints figures (JSON).

offline: documents in partitions of 1,000, in-process (one analysing process per core, or one
analysing process: the issue's baseline) vs the two workers: wall time per setup, speed-up, and
per-partition overhead on the workers; then an in-process run confined to one core against the two
workers confined to a core each (two one-core hosts).
llm: the throughput scenario of benchmarks.run (the loopback server, 0.5 s latency, concurrency 64)
in-process and on the workers, each against the plain asyncio script: does Celery keep the ratio?

    .venv/bin/python -m benchmarks.workers [--documents 12000] [--llm-documents 6000] [--only offline,llm]
    .venv/bin/python -m benchmarks.workers --only offline --documents 2400 --paragraphs 10 --partition-size 200
"""

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
import yaml

from benchmarks.plain import API_KEY
from benchmarks.run import BIN, REPO_ROOT, Server, job_config, plain_script, run_job, write_jsonl

POSTGRES_ADMIN_URL = os.environ.get("BATCH_PIPELINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BROKER_URL = os.environ.get("BATCH_PIPELINE_BENCH_BROKER_URL", "pyamqp://guest:guest@127.0.0.1:5672//")
BACKEND_URL = os.environ.get("BATCH_PIPELINE_BENCH_CELERY_BACKEND_URL", "redis://127.0.0.1:6379/15")
PARTITION_SIZE = 1000
CORES = sorted(os.sched_getaffinity(0))
# One paragraph of a page-sized document for --paragraphs: about 200 bytes, an e-mail address and a
# phone number written as at home (national numbers are tried in every configured region, the costly
# case), so that analysis, not bookkeeping, is what a document costs.
PARAGRAPH = (
    "The quarterly review covers shipments, invoices and support tickets for region {i}. Contact "
    "agent{j}.{i}@example.com or call (415) 555-{j:04d} about order {i}; the refund was approved on 2024-05-12.\n\n"
)


def create_database(purpose: str) -> str:
    name = f"bp_bench_{purpose}_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return sa.engine.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    engine = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{sa.engine.make_url(url).database}" WITH (FORCE)'))
    engine.dispose()


def deployment(workdir: Path, queue: str) -> dict:
    """A PostgreSQL-backed DAGSTER_HOME and document store, and the Celery settings, in an environment."""
    home = workdir / "dagster_home"
    home.mkdir()
    config = yaml.safe_load((REPO_ROOT / "deploy" / "postgres" / "dagster.yaml").read_text())
    config["concurrency"]["pools"]["default_limit"] = 50
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCH_PIPELINE_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(home),
        DAGSTER_POSTGRES_URL=create_database("dagster"),
        BATCH_PIPELINE_DATABASE_URL=create_database("store"),
        BATCH_PIPELINE_REPORTS_DIR=str(workdir / "reports"),
        BATCH_PIPELINE_CELERY_BROKER=BROKER_URL,
        BATCH_PIPELINE_CELERY_BACKEND=BACKEND_URL,
        BATCH_PIPELINE_CELERY_QUEUE=queue,
        BATCH_PIPELINE_SOURCE_ROOTS=str(workdir),
    )
    return env


def start_worker(env: dict, name: str, log: Path, core: int | None = None) -> subprocess.Popen:
    command = [str(BIN / "batch-pipeline"), "worker", "--name", name, "--concurrency", "1"]
    if core is not None:  # the worker and every process it starts
        command = ["taskset", "--cpu-list", str(core), *command]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while " ready." not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker {name} did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    return process


def partition_times(env: dict, run_id: str) -> tuple[list[float], float]:
    """Seconds each partition step spent on its worker beyond analysing its documents, and the
    partitions' analysis seconds in all (from each partition's "analysed in" line)."""
    import dagster as dg

    began, ended, analysed = {}, {}, {}
    os.environ["DAGSTER_POSTGRES_URL"] = env["DAGSTER_POSTGRES_URL"]  # read by the instance's storage config
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        for entry in instance.all_logs(run_id):
            key, event = entry.step_key, entry.dagster_event
            if not key or not key.startswith("analyse_partition"):
                continue
            if event and event.event_type_value == "ENGINE_EVENT" and "in celery worker" in (event.message or ""):
                began[key] = entry.timestamp
            elif event and event.event_type_value == "STEP_SUCCESS":
                ended[key] = entry.timestamp
            elif match := re.search(r"analysed in ([\d.]+)s", entry.user_message or ""):
                analysed[key] = float(match.group(1))
    return [ended[key] - began[key] - analysed[key] for key in began], sum(analysed.values())


def write_pages(path: Path, count: int, paragraphs: int) -> Path:
    """count documents of `paragraphs` paragraphs each, all different."""
    with path.open("w") as f:
        for i in range(count):
            body = "".join(PARAGRAPH.format(i=i, j=j) for j in range(paragraphs))
            f.write(json.dumps({"filename": f"page_{i:06d}.md", "markdown_content": f"# Page {i}\n\n{body}"}) + "\n")
    return path


def offline(
    workdir: Path,
    env: dict,
    documents: int,
    report: dict,
    paragraphs: int = 0,
    partition_size: int = PARTITION_SIZE,
    quick: bool = False,
) -> None:
    if paragraphs:
        source = write_pages(workdir / "pages.jsonl", documents, paragraphs)
    else:
        source = write_jsonl(workdir / "docs.jsonl", documents)

    def config(project: str, execution: dict | None = None, offline_workers: int | None = None) -> dict:
        run_config = job_config(source, "local", project)
        run_config["ops"]["create_document_records"]["config"]["partition_size"] = partition_size
        if execution:
            run_config["execution"] = {"config": execution}
        if offline_workers:
            run_config["resources"] = {"offline": {"config": {"workers": offline_workers}}}
        return run_config

    if quick:
        on_one_core, core_each = _one_core_against_a_core_each(workdir, env, config)
        overheads, analysis_seconds = partition_times(env, core_each.run_id)
        report["offline"] = {
            "documents": documents,
            "paragraphs_per_document": paragraphs,
            "partition_size": partition_size,
            **_one_core_figures(on_one_core, core_each),
            **_partition_figures(overheads, analysis_seconds, documents),
        }
        return
    in_process = run_job(workdir, config("in-process"), "in_process", env)
    print(f"in-process: {in_process.seconds:.1f} s", flush=True)
    one_process = run_job(workdir, config("one-process", offline_workers=1), "one_process", env)
    print(f"in-process, one offline worker process: {one_process.seconds:.1f} s", flush=True)
    with workers_running(env, workdir):
        celery = run_job(workdir, config("celery", {"celery": {}}), "celery", env)
        print(f"celery, two workers: {celery.seconds:.1f} s", flush=True)
        overheads, analysis_seconds = partition_times(env, celery.run_id)
        celery_one = run_job(workdir, config("celery-one", {"celery": {}}, offline_workers=1), "celery_one", env)
        print(f"celery, two workers, one offline worker process each: {celery_one.seconds:.1f} s", flush=True)
    on_one_core, core_each = _one_core_against_a_core_each(workdir, env, config)
    report["offline"] = {
        "documents": documents,
        "paragraphs_per_document": paragraphs,  # 0: one-line notes (benchmarks.plain.document)
        "partition_size": partition_size,
        "in_process_seconds": round(in_process.seconds, 1),
        "in_process_one_offline_worker_seconds": round(one_process.seconds, 1),
        "celery_two_workers_seconds": round(celery.seconds, 1),
        "celery_two_workers_one_offline_process_each_seconds": round(celery_one.seconds, 1),
        "speed_up_vs_in_process": round(in_process.seconds / celery.seconds, 2),
        "speed_up_one_offline_process_each_vs_in_process": round(in_process.seconds / celery_one.seconds, 2),
        # The baseline: one analysing process, so one core busy and the other mostly idle.
        "speed_up_vs_one_analysing_process": round(one_process.seconds / celery.seconds, 2),
        **_one_core_figures(on_one_core, core_each),
        **_partition_figures(overheads, analysis_seconds, documents),
    }


def _one_core_against_a_core_each(workdir: Path, env: dict, config) -> tuple:
    """A one-core host against two one-core "hosts"."""
    on_one_core = run_job(workdir, config("on-one-core", offline_workers=1), "on_one_core", env, core=CORES[0])
    print(f"in-process, confined to one core: {on_one_core.seconds:.1f} s", flush=True)
    with workers_running(env, workdir, core_each=True):
        core_each = run_job(workdir, config("celery-core-each", {"celery": {}}, offline_workers=1), "core_each", env)
        print(f"celery, two workers confined to a core each: {core_each.seconds:.1f} s", flush=True)
    return on_one_core, core_each


def _one_core_figures(on_one_core, core_each) -> dict:
    return {
        "in_process_confined_to_one_core_seconds": round(on_one_core.seconds, 1),
        "celery_two_workers_a_core_each_seconds": round(core_each.seconds, 1),
        "speed_up_a_core_each_vs_confined_to_one_core": round(on_one_core.seconds / core_each.seconds, 2),
    }


def _partition_figures(overheads: list[float], analysis_seconds: float, documents: int) -> dict:
    return {
        "analysis_ms_per_document_on_the_workers": round(analysis_seconds / documents * 1000, 2),
        "per_partition_overhead_seconds_median": round(sorted(overheads)[len(overheads) // 2], 2),
        "per_partition_overhead_seconds_max": round(max(overheads), 2),
    }


def llm_bound(workdir: Path, env: dict, documents: int, report: dict, latency: float = 0.5) -> None:
    concurrency = 64  # LlmResource's default, and the plain script's
    server = Server(workdir, latency)
    try:
        env = {**env, "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": API_KEY}
        llm = {"max_concurrent_requests": concurrency}
        source = write_jsonl(workdir / "llm.jsonl", documents)
        # As in benchmarks.run: an earlier run left the response format and the provider's limits in the store.
        warm_up = write_jsonl(workdir / "llm_warm_up.jsonl", 8, first=documents)
        run_job(workdir, job_config(warm_up, "gpt-test", "llm-warm-up", llm), "llm_warm_up", env)
        plain_seconds, _ = plain_script(server.url, documents, concurrency)
        in_process = run_job(workdir, job_config(source, "gpt-test", "llm-in-process", llm), "llm_in_process", env)
        print(f"LLM: plain script {plain_seconds:.1f} s, in-process {in_process.seconds:.1f} s", flush=True)
        on_celery = job_config(source, "gpt-test", "llm-celery", llm)
        on_celery["execution"] = {"config": {"celery": {}}}
        with workers_running(env, workdir):
            plain_again, _ = plain_script(server.url, documents, concurrency)
            celery = run_job(workdir, on_celery, "llm_celery", env)
        print(f"LLM: plain script {plain_again:.1f} s, celery {celery.seconds:.1f} s", flush=True)
    finally:
        server.close()
    report["llm"] = {
        "documents": documents,
        "latency_s": latency,
        "concurrency": concurrency,
        "physical_limit_docs_per_s": round(concurrency / latency, 1),
        "plain_script_docs_per_s": round(documents / plain_seconds, 1),
        "in_process_docs_per_s": round(documents / in_process.seconds, 1),
        "in_process_over_plain": round(plain_seconds / in_process.seconds, 3),
        "plain_script_beside_the_workers_docs_per_s": round(documents / plain_again, 1),
        "celery_docs_per_s": round(documents / celery.seconds, 1),
        "celery_over_plain": round(plain_again / celery.seconds, 3),
        "statuses_in_process": status_counts(env, in_process.run_id),
        "statuses_celery": status_counts(env, celery.run_id),
    }


@contextlib.contextmanager
def workers_running(env: dict, workdir: Path, core_each: bool = False) -> Iterator[None]:
    """Two `batch-pipeline worker --concurrency 1`, stopped by their process groups; with core_each, each
    (and every process it starts) on its own core of the two first CORES: two one-core hosts."""
    workers = []
    try:
        for i in (0, 1):
            log = workdir / f"w{i}.log"
            workers.append(start_worker(env, f"w{i}-{uuid.uuid4().hex[:4]}", log, CORES[i] if core_each else None))
        yield
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(60)


def status_counts(env: dict, run_id: str) -> dict[str, int]:
    from batch_pipeline.store import DocumentStore

    store = DocumentStore(env["BATCH_PIPELINE_DATABASE_URL"])
    try:
        return store.status_counts(run_id)
    finally:
        store.close()


SCENARIOS = ("offline", "llm")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=12_000, help="offline documents")
    parser.add_argument(
        "--paragraphs", type=int, default=0, help="offline documents of this many paragraphs (~200 bytes each) "
        "instead of one-line notes: analysis-bound rather than bookkeeping-bound"
    )  # fmt: skip
    parser.add_argument("--partition-size", type=int, default=PARTITION_SIZE, help="offline partition size")
    parser.add_argument("--llm-documents", type=int, default=6_000)
    parser.add_argument("--llm-latency", type=float, default=0.5)
    parser.add_argument(
        "--quick", action="store_true", help="offline: only the one-core run against the two workers on a core "
        "each (every code path once; the smoke test's setting)"
    )  # fmt: skip
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {', '.join(SCENARIOS)}")
    args = parser.parse_args(argv)
    chosen = set(args.only.split(","))
    if "offline" in chosen and len(CORES) < 2:
        parser.error("the offline scenario puts a worker on each of two cores: this process may use one")
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="bp-workers-") as tmp:
        workdir = Path(tmp)
        queue = f"bp_bench_{uuid.uuid4().hex[:8]}"
        env = deployment(workdir, queue)
        try:
            if "offline" in chosen:
                offline(workdir, env, args.documents, report, args.paragraphs, args.partition_size, args.quick)
            if "llm" in chosen:
                llm_bound(workdir, env, args.llm_documents, report, args.llm_latency)
        finally:
            for name in ("DAGSTER_POSTGRES_URL", "BATCH_PIPELINE_DATABASE_URL"):
                drop_database(env[name])
            import kombu

            with kombu.Connection(BROKER_URL) as connection:
                connection.default_channel.queue_delete(queue)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
