"""Issue 13's benchmark: offline documents in partitions of 1,000, in-process vs two Celery workers of
concurrency 1, Dagster's instance and the document store on PostgreSQL, RabbitMQ as broker. Prints
figures (JSON): wall time per setup, speed-up, and per-partition overhead on the workers.

    .venv/bin/python -m benchmarks.workers [--documents 12000]
"""

import argparse
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
import yaml

from benchmarks.run import BIN, REPO_ROOT, job_config, run_job, write_jsonl

POSTGRES_ADMIN_URL = os.environ.get("BATCH_PIPELINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BROKER_URL = os.environ.get("BATCH_PIPELINE_BENCH_BROKER_URL", "pyamqp://guest:guest@127.0.0.1:5672//")
BACKEND_URL = os.environ.get("BATCH_PIPELINE_BENCH_CELERY_BACKEND_URL", "redis://127.0.0.1:6379/11")
PARTITION_SIZE = 1000


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
    )
    return env


def start_worker(env: dict, name: str, log: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [str(BIN / "batch-pipeline"), "worker", "--name", name, "--concurrency", "1"],
        cwd=REPO_ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while " ready." not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker {name} did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    return process


def partition_overheads(env: dict, run_id: str) -> list[float]:
    """Seconds each partition step spent on its worker beyond analysing its documents."""
    import dagster as dg

    began, ended, analysed = {}, {}, {}
    os.environ["DAGSTER_POSTGRES_URL"] = env["DAGSTER_POSTGRES_URL"]  # read by the instance's storage config
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        for entry in instance.all_logs(run_id):
            key, event = entry.step_key, entry.dagster_event
            if not key or not key.startswith("analyze_partition"):
                continue
            if event and event.event_type_value == "ENGINE_EVENT" and "in celery worker" in (event.message or ""):
                began[key] = entry.timestamp
            elif event and event.event_type_value == "STEP_SUCCESS":
                ended[key] = entry.timestamp
            elif match := re.search(r"analysed in ([\d.]+)s", entry.user_message or ""):
                analysed[key] = float(match.group(1))
    return [ended[key] - began[key] - analysed[key] for key in began]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=12_000)
    args = parser.parse_args(argv)
    report: dict = {"documents": args.documents, "partition_size": PARTITION_SIZE}
    with tempfile.TemporaryDirectory(prefix="bp-workers-") as tmp:
        workdir = Path(tmp)
        queue = f"bp_bench_{uuid.uuid4().hex[:8]}"
        env = deployment(workdir, queue)
        source = write_jsonl(workdir / "docs.jsonl", args.documents)
        workers = []
        try:

            def config(project: str, execution: dict | None = None, offline_workers: int | None = None) -> dict:
                run_config = job_config(source, "local", project)
                run_config["ops"]["create_document_records"]["config"]["partition_size"] = PARTITION_SIZE
                if execution:
                    run_config["execution"] = {"config": execution}
                if offline_workers:
                    run_config["resources"] = {"offline": {"config": {"workers": offline_workers}}}
                return run_config

            in_process = run_job(workdir, config("in-process"), "in_process", env)
            print(f"in-process: {in_process.seconds:.1f} s", flush=True)
            one_core = run_job(workdir, config("one-core", offline_workers=1), "one_core", env)
            print(f"in-process, one offline worker process: {one_core.seconds:.1f} s", flush=True)
            workers = [start_worker(env, f"w{i}", workdir / f"w{i}.log") for i in (1, 2)]
            celery = run_job(workdir, config("celery", {"celery": {}}), "celery", env)
            print(f"celery, two workers: {celery.seconds:.1f} s", flush=True)
            overheads = partition_overheads(env, celery.run_id)
            celery_one = run_job(workdir, config("celery-one", {"celery": {}}, offline_workers=1), "celery_one", env)
            print(f"celery, two workers, one offline worker process each: {celery_one.seconds:.1f} s", flush=True)
        finally:
            for worker in workers:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(60)
            for name in ("DAGSTER_POSTGRES_URL", "BATCH_PIPELINE_DATABASE_URL"):
                drop_database(env[name])
            import kombu

            with kombu.Connection(BROKER_URL) as connection:
                connection.default_channel.queue_delete(queue)
    report["in_process_seconds"] = round(in_process.seconds, 1)
    report["in_process_one_offline_worker_seconds"] = round(one_core.seconds, 1)
    report["celery_two_workers_seconds"] = round(celery.seconds, 1)
    report["celery_two_workers_one_offline_process_each_seconds"] = round(celery_one.seconds, 1)
    report["speed_up_vs_in_process"] = round(in_process.seconds / celery.seconds, 2)
    report["speed_up_one_offline_process_each_vs_in_process"] = round(in_process.seconds / celery_one.seconds, 2)
    report["speed_up_vs_one_core"] = round(one_core.seconds / celery.seconds, 2)
    report["per_partition_overhead_seconds_median"] = round(sorted(overheads)[len(overheads) // 2], 2)
    report["per_partition_overhead_seconds_max"] = round(max(overheads), 2)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
