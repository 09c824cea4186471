"""`batch-pipeline worker`: a Celery worker for this code location, on the broker and backend the runs use.

It is dagster-celery's worker (`celery -A dagster_celery.app worker`), which reads its settings from a
module named dagster_celery_config; the one written here reads them from the environment when the
worker starts, from the same functions the executor uses, so that no secret is written to disk.
"""

import os
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import kombu

from batch_pipeline import settings

WORKER_SETTINGS_MODULE = """\
from batch_pipeline.workers.celery_settings import worker_app_settings

globals().update(worker_app_settings())
"""

BROKER_CONNECT_TIMEOUT_SECONDS = 5


class WorkerRefused(Exception):
    """The worker cannot start; the message says why and what to do."""


def check_can_start(dagster_home: str | None, broker_url: str) -> None:
    if not dagster_home:
        raise WorkerRefused(
            "set DAGSTER_HOME to the instance the runs use (its dagster.yaml with PostgreSQL storage when "
            "workers run on other hosts)"
        )
    connection = kombu.Connection(broker_url, connect_timeout=BROKER_CONNECT_TIMEOUT_SECONDS)
    try:
        connection.ensure_connection(max_retries=1, timeout=BROKER_CONNECT_TIMEOUT_SECONDS)
    except Exception as e:
        raise WorkerRefused(
            f"cannot reach the Celery broker at {redacted(broker_url)} ({type(e).__name__}: {e}); start it or set "
            f"${settings.CELERY_BROKER_ENV}"
        ) from None
    finally:
        connection.release()


def redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def write_worker_settings(dagster_home: str) -> Path:
    """The folder holding dagster_celery_config.py, to put on the worker's PYTHONPATH."""
    folder = Path(dagster_home) / "dagster_celery" / "config" / "batch_pipeline"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dagster_celery_config.py").write_text(WORKER_SETTINGS_MODULE)
    return folder


def worker_command(name: str | None, queues: list[str], concurrency: int, loglevel: str = "INFO") -> list[str]:
    node = f"{name or 'batch-pipeline-' + uuid.uuid4().hex[:6]}@%h"
    return [
        sys.executable, "-m", "celery", "--app", "dagster_celery.app", "worker",
        "--queues", ",".join(queues or [settings.celery_queue()]),
        "--hostname", node,
        # Threads, not prefork: a step's offline analysis runs in worker processes of its own (a
        # hard per-document time limit), which a daemonic prefork child may not start; the LLM
        # path is asyncio. Each step still gets its own event loop.
        "--pool", "threads",
        "--concurrency", str(concurrency),
        "--prefetch-multiplier", "1",
        "--loglevel", loglevel,
        # Imported once in the worker's main process: each forked slot starts with the code location loaded.
        "--include", "batch_pipeline.definitions",
    ]  # fmt: skip


def exec_worker(name: str | None, queues: list[str], concurrency: int) -> None:
    """Replace this process by the worker (so signals sent to it reach Celery); refuses with WorkerRefused."""
    dagster_home = os.environ.get("DAGSTER_HOME")
    check_can_start(dagster_home, settings.celery_broker_url())
    folder = write_worker_settings(dagster_home)
    python_path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    command = worker_command(name, queues, concurrency)
    os.execve(command[0], command, {**os.environ, "PYTHONPATH": python_path})
