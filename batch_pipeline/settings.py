"""What the deployment decides, read from its environment at call time (never from run config,
so that whoever may launch a run cannot point it elsewhere): where the pipeline keeps its files,
its database, and the LLM endpoints a run may use.

Order of precedence for the data folder: ``BATCH_PIPELINE_HOME``, then
``$DAGSTER_HOME/batch_pipeline``, then ``~/.batch_pipeline``.
"""

import os
from pathlib import Path
from urllib.parse import urlsplit

DATABASE_URL_ENV = "BATCH_PIPELINE_DATABASE_URL"
REPORTS_DIR_ENV = "BATCH_PIPELINE_REPORTS_DIR"
HOME_ENV = "BATCH_PIPELINE_HOME"
SOURCE_ROOT_ENV = "BATCH_PIPELINE_SOURCE_ROOT"
SOURCE_ROOTS_ENV = "BATCH_PIPELINE_SOURCE_ROOTS"
INBOX_ENV = "BATCH_PIPELINE_INBOX"
SWEEP_SOURCE_ENV = "BATCH_PIPELINE_SWEEP_SOURCE"
EXCLUDE_ENV = "BATCH_PIPELINE_EXCLUDE"
ANALYSES_ENV = "BATCH_PIPELINE_ANALYSES"
MAX_FINDINGS_ENV = "BATCH_PIPELINE_MAX_FINDINGS"
DEFAULT_MAX_FINDINGS = 1000
REPORTS_URL_ENV = "BATCH_PIPELINE_REPORTS_URL"
MAX_FAILURE_RATE_ENV = "BATCH_PIPELINE_MAX_FAILURE_RATE"
MIN_SCORE_ENV = "BATCH_PIPELINE_MIN_SCORE"
CONVERSION_MEMORY_ENV = "BATCH_PIPELINE_CONVERSION_MEMORY_MB"
# One conversion worker per core: two of them on a 2-core, 24 GB host leave most of it to the rest.
DEFAULT_CONVERSION_MEMORY_MB = 4096
API_KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"
ALLOWED_BASE_URLS_ENV = "BATCH_PIPELINE_LLM_BASE_URLS"
RATE_LIMIT_URL_ENV = "BATCH_PIPELINE_RATE_LIMIT_URL"
EXECUTOR_ENV = "BATCH_PIPELINE_EXECUTOR"
EXECUTORS = ("in_process", "multiprocess", "celery")
CELERY_BROKER_ENV = "BATCH_PIPELINE_CELERY_BROKER"
CELERY_BACKEND_ENV = "BATCH_PIPELINE_CELERY_BACKEND"
CELERY_QUEUE_ENV = "BATCH_PIPELINE_CELERY_QUEUE"
DEFAULT_CELERY_QUEUE = "dagster"  # dagster-celery's own default, so its tools (flower, `dagster-celery worker`) agree
# RabbitMQ: a Redis broker would deliver Celery's priorities in reverse.
DEFAULT_CELERY_BROKER = "pyamqp://guest@localhost:5672//"
DEFAULT_CELERY_BACKEND = "rpc://"


class NotAllowed(ValueError):
    """Run config asked for something only the deployment may choose."""


def data_dir() -> Path:
    """The data folder (the default SQLite store, the reports): $BATCH_PIPELINE_HOME, else
    $DAGSTER_HOME/batch_pipeline, else ~/.batch_pipeline."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"]).expanduser() / "batch_pipeline"
    return Path.home() / ".batch_pipeline"


def database_url() -> str:
    """The document store's SQLAlchemy URL: ``BATCH_PIPELINE_DATABASE_URL`` or an SQLite file."""
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        return url
    return f"sqlite:///{data_dir() / 'store.sqlite'}"


def reports_dir() -> Path:
    """Folder holding one sub-folder of report files per run."""
    if os.environ.get(REPORTS_DIR_ENV):
        return Path(os.environ[REPORTS_DIR_ENV]).expanduser()
    return data_dir() / "reports"


def source_root() -> Path:
    """Where a relative ``source`` resolves from: $BATCH_PIPELINE_SOURCE_ROOT, else the run's working directory."""
    return Path(os.environ.get(SOURCE_ROOT_ENV) or ".").expanduser()


def inbox_dir() -> Path:
    """The inbox folder the inbox sensor watches: $BATCH_PIPELINE_INBOX, else <data folder>/inbox."""
    return Path(os.environ.get(INBOX_ENV) or data_dir() / "inbox").expanduser()


def sweep_dir() -> Path:
    """The folder the nightly sweep analyses: $BATCH_PIPELINE_SWEEP_SOURCE, else <data folder>/sweep."""
    return Path(os.environ.get(SWEEP_SOURCE_ENV) or data_dir() / "sweep").expanduser()


def source_roots() -> list[Path]:
    """The folders a run's ``source`` may lie in (links and ``..`` resolved): those listed in
    ``$BATCH_PIPELINE_SOURCE_ROOTS`` (separated by ``os.pathsep``), else the source root; and always
    the inbox and the sweep folder, which the deployment's own triggers read."""
    listed = [Path(p).expanduser() for p in os.environ.get(SOURCE_ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    return [root.resolve() for root in [*(listed or [source_root()]), inbox_dir(), sweep_dir()]]


def analyses_folders() -> list[Path]:
    """Folders of analysis definition files the deployment adds (``BATCH_PIPELINE_ANALYSES``, separated
    like PATH); run config never names one."""
    value = os.environ.get(ANALYSES_ENV, "")
    folders = [Path(part).expanduser() for part in value.split(os.pathsep) if part.strip()]
    return list({folder.resolve(): folder for folder in folders}.values())  # a folder named twice is read once


def is_private(path: Path) -> bool:
    """Whether a resolved path lies in the deployment's own data, which no source may read even
    inside an allowed root: the data folder (the store, every run's reports) or $DAGSTER_HOME,
    outside the inbox and sweep folders."""
    own = [data_dir(), *([Path(os.environ["DAGSTER_HOME"])] if os.environ.get("DAGSTER_HOME") else [])]
    triggers = [inbox_dir().resolve(), sweep_dir().resolve()]
    return any(path.is_relative_to(folder.expanduser().resolve()) for folder in own) and not any(
        path.is_relative_to(folder) for folder in triggers
    )


def excluded_patterns() -> list[str]:
    """Glob patterns (``$BATCH_PIPELINE_EXCLUDE``, comma-separated) of source entries the deployment
    does not read: each one found is listed as skipped."""
    return [p.strip() for p in os.environ.get(EXCLUDE_ENV, "").split(",") if p.strip()]


def llm_api_key() -> str | None:
    """The LLM provider's key: $OPENAI_API_KEY only (never run config, never logged or stored)."""
    return os.environ.get(API_KEY_ENV) or None


def allowed_llm_base_urls() -> list[str]:
    """``$OPENAI_BASE_URL`` (else OpenAI's own) and the comma-separated ``$BATCH_PIPELINE_LLM_BASE_URLS``."""
    default = os.environ.get(BASE_URL_ENV) or "https://api.openai.com/v1"
    extra = [url.strip() for url in os.environ.get(ALLOWED_BASE_URLS_ENV, "").split(",") if url.strip()]
    return [_normal(url) for url in [default, *extra]]


def llm_base_url(requested: str | None) -> str:
    """The endpoint a run uses: the deployment's default, or one it allows. The key goes with every
    request, so an endpoint run config names is refused, without repeating it (it may hold a
    secret read with {env: ...}), unless the deployment listed it."""
    allowed = allowed_llm_base_urls()
    if requested is None:
        return allowed[0]
    if _normal(requested) not in allowed:
        raise NotAllowed(
            f"the llm resource's base_url is not an endpoint this deployment allows; the allowed ones are "
            f"${BASE_URL_ENV} (else OpenAI's) and those listed in ${ALLOWED_BASE_URLS_ENV}"
        )
    return _normal(requested)


def _normal(url: str) -> str:
    return url.strip().rstrip("/")


def rate_limit_url() -> str | None:
    """The Redis (``redis://``, ``rediss://``, ``unix://``) that holds the pace shared by every
    process: ``$BATCH_PIPELINE_RATE_LIMIT_URL``; None: each process keeps its own."""
    url = os.environ.get(RATE_LIMIT_URL_ENV) or None
    if url is not None and urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise NotAllowed(f"${RATE_LIMIT_URL_ENV} must be a redis://, rediss:// or unix:// URL")
    return url


def celery_broker_url() -> str:
    """The Celery broker of runs and workers: ``$BATCH_PIPELINE_CELERY_BROKER``, else RabbitMQ on localhost."""
    return os.environ.get(CELERY_BROKER_ENV) or DEFAULT_CELERY_BROKER


def celery_backend_url() -> str:
    """The Celery result backend: ``$BATCH_PIPELINE_CELERY_BACKEND``, else ``rpc://``."""
    return os.environ.get(CELERY_BACKEND_ENV) or DEFAULT_CELERY_BACKEND


def triggered_run_executor() -> str | None:
    """The executor of the runs the inbox sensor and the schedule launch: ``$BATCH_PIPELINE_EXECUTOR``
    (in_process, multiprocess or celery), else the job's default (in_process)."""
    executor = os.environ.get(EXECUTOR_ENV) or None
    if executor is not None and executor not in EXECUTORS:
        raise NotAllowed(f"${EXECUTOR_ENV} is {executor!r}; it must be one of {', '.join(EXECUTORS)}")
    return executor


def celery_queue(requested: str | None = None) -> str:
    """The queue a run's steps go to and workers take from by default: ``$BATCH_PIPELINE_CELERY_QUEUE``, else dagster."""
    return requested or os.environ.get(CELERY_QUEUE_ENV) or DEFAULT_CELERY_QUEUE


def max_findings() -> int:
    """How many items each list of a stored result keeps (content_compliance's findings,
    document_metadata's headings, links and dates), whatever analysed the document:
    ``$BATCH_PIPELINE_MAX_FINDINGS``, else 1,000. The result records how many more there were."""
    return _whole_number(MAX_FINDINGS_ENV, DEFAULT_MAX_FINDINGS)


def conversion_memory_mb() -> int:
    """The memory (address space) each conversion worker process may use, in MB:
    ``$BATCH_PIPELINE_CONVERSION_MEMORY_MB``, else 4096. A file that needs more fails alone."""
    return _whole_number(CONVERSION_MEMORY_ENV, DEFAULT_CONVERSION_MEMORY_MB, " of MB")


def reports_url() -> str | None:
    """Where the deployment serves the reports folder over HTTP (``$BATCH_PIPELINE_REPORTS_URL``,
    e.g. http://reports.internal/), so the asset page links each run's report.html; else None."""
    return os.environ.get(REPORTS_URL_ENV) or None


def max_failure_rate() -> float | None:
    """The deployment's line for a run's share of failed documents (0 to 1), for runs that set none:
    ``$BATCH_PIPELINE_MAX_FAILURE_RATE``, else None (the failure-rate check only measures)."""
    return _share(MAX_FAILURE_RATE_ENV)


def min_score() -> float | None:
    """The deployment's lowest overall score (0 to 1) on labelled answers, for runs that set none:
    ``$BATCH_PIPELINE_MIN_SCORE``, else None (the labelled-score check only measures)."""
    return _share(MIN_SCORE_ENV)


def _share(env: str) -> float | None:
    value = os.environ.get(env, "").strip()
    if not value:
        return None
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"${env} is {value!r}; it must be a number from 0 to 1")
    return share


def _whole_number(env: str, default: int, unit: str = "") -> int:
    value = os.environ.get(env) or str(default)
    if not value.strip().isdecimal() or int(value) < 1:
        raise ValueError(f"${env} is {value!r}; it must be a whole number{unit}, at least 1")
    return int(value)
