import contextlib
import fcntl
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

import dagster as dg
import pytest

from batch_pipeline.definitions import defs
from batch_pipeline.store import DocumentStore

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_DOCS = REPO_ROOT / "examples" / "docs"
EXAMPLE_COUNT = sum(1 for _ in EXAMPLE_DOCS.iterdir())  # one of them (empty.md) ends empty, the rest ok
DAGSTER = str(Path(sys.executable).with_name("dagster"))
BATCH_PIPELINE = str(Path(sys.executable).with_name("batch-pipeline"))


# A subprocess that root runs without root's right to read any file (the tests run as root in CI).
WITHOUT_READ_OVERRIDE = (
    ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]
    if os.geteuid() == 0
    else []
)


def _required_service_missing(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: tests of real services must run)")
    pytest.skip(message)


@pytest.fixture
def tesseract() -> str:
    """Debian's tesseract-ocr, which the OCR path runs (.ci/run installs it)."""
    path = shutil.which("tesseract")
    if path is None:
        _required_service_missing("Tesseract is not installed: apt-get install tesseract-ocr tesseract-ocr-eng")
    return path


@pytest.fixture(autouse=True, scope="session")
def source_roots(tmp_path_factory):
    """Sources may lie in the tests' temporary folders and the repository (examples/), as a deployment
    lists its own in $BATCH_PIPELINE_SOURCE_ROOTS; processes the tests start inherit it."""
    roots = os.pathsep.join([str(tmp_path_factory.getbasetemp()), tempfile.gettempdir(), str(REPO_ROOT)])
    with mock.patch.dict(os.environ, {"BATCH_PIPELINE_SOURCE_ROOTS": roots}):
        yield roots


@pytest.fixture(autouse=True)
def own_paces(monkeypatch):
    """Each test starts with no pace or learned limit left in this process by another."""
    from batch_pipeline.rate_limits import pace_state

    monkeypatch.setattr(pace_state, "_LOCAL_STATES", {})
    monkeypatch.delenv("BATCH_PIPELINE_RATE_LIMIT_URL", raising=False)


SLOTS = 4  # test processes at once on one machine, each with Redis databases of its own


@functools.cache
def _slot() -> int | None:
    """A slot no other live test process holds (xdist workers, a second session, a worker xdist
    restarted after a crash: the dead one's lock went with it), held until this process ends.
    Taken on first use, so that pytest-xdist's controller, which runs no test, holds none. None
    when all are held."""
    for slot in range(SLOTS):
        lock = open(Path(tempfile.gettempdir()) / f"batch_pipeline_tests_slot_{slot}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        _HELD_SLOT.append(lock)
        return slot
    return None


_HELD_SLOT: list = []


def _redis_url(variable: str, default: str) -> str:
    """$variable (or the default), with this process's slot taken off its database number."""
    if (slot := _slot()) is None:
        pytest.fail(
            f"{SLOTS} test processes already hold this machine's test Redis databases (pytest -n {SLOTS} at most)"
        )
    url = urlsplit(os.environ.get(variable, default))
    return url._replace(path=f"/{int(url.path.strip('/') or 0) - slot}").geturl()


def redis_test_url() -> str:
    """The tests' own Redis database: 13 for the first slot, 12, 11, 10; only these are ever flushed."""
    return _redis_url("BATCH_PIPELINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def celery_backend_test_url() -> str:
    """Celery's result backend in the Celery tests, 7 down to 4 (results expire; nothing flushes it)."""
    return _redis_url("BATCH_PIPELINE_TEST_CELERY_BACKEND_URL", "redis://127.0.0.1:6379/7")


BROKER_URL = os.environ.get("BATCH_PIPELINE_TEST_BROKER_URL", "pyamqp://guest:guest@127.0.0.1:5672//")


@pytest.fixture
def broker() -> str:
    """The RabbitMQ the Celery tests and benchmarks use."""
    import kombu

    connection = kombu.Connection(BROKER_URL, connect_timeout=3)
    try:
        connection.ensure_connection(max_retries=1, timeout=3)
    except Exception as e:
        _required_service_missing(f"RabbitMQ is not reachable at {BROKER_URL}: {e}")
    finally:
        connection.release()
    return BROKER_URL


@pytest.fixture
def redis_url() -> str:
    """The URL of the tests' Redis database, emptied before and after; skips without Redis, except under CI=true."""
    import redis

    url = redis_test_url()
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.flushdb()
    except redis.RedisError as e:
        client.close()
        _required_service_missing(f"Redis is not reachable at {url}: {e}")
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def pipeline_home(tmp_path, monkeypatch) -> Path:
    """An isolated data folder: the default SQLite store and the reports live under it."""
    home = tmp_path / "batch_pipeline_home"
    monkeypatch.setenv("BATCH_PIPELINE_HOME", str(home))
    monkeypatch.delenv("BATCH_PIPELINE_DATABASE_URL", raising=False)
    monkeypatch.delenv("BATCH_PIPELINE_REPORTS_DIR", raising=False)
    return home


@pytest.fixture
def store(pipeline_home) -> DocumentStore:
    from batch_pipeline import settings

    document_store = DocumentStore(settings.database_url())
    document_store.create_schema()
    yield document_store
    document_store.close()


@pytest.fixture(scope="session")
def offline_workers():
    """Worker processes for the offline analysers, shared by the tests that call the runner directly."""
    from batch_pipeline.batch.offline import OfflineWorkers

    workers = OfflineWorkers(2)
    yield workers
    workers.close()


@pytest.fixture(scope="session")
def _offline_pools():
    pools = {}
    yield pools
    for workers in pools.values():
        workers.close()


@pytest.fixture(autouse=True)
def one_offline_pool(monkeypatch, _offline_pools):
    """Job runs in this process reuse one pool of offline worker processes (starting two costs about
    1.6 s of CPU), one per value of what a worker reads from its environment, so a run never meets
    workers started under other settings. A run that ends with work still in the pool (it failed
    or was stopped) stops the pool, as the resource's own teardown does, and the next run starts
    a new one. Runs in their own processes start their own pools, as in use."""
    from batch_pipeline.batch.offline import WORKER_ENVIRONMENT, OfflineWorkers
    from batch_pipeline.defs.resources import OfflineAnalysisResource

    class SharedWorkers(OfflineWorkers):
        def __init__(self, workers):
            super().__init__(workers)
            self.futures = []

        def submit(self, items, timeout_seconds):
            future = super().submit(items, timeout_seconds)
            self.futures = [f for f in self.futures if not f.done()] + [future]
            return future

    def key_of(resource) -> tuple:
        return (resource.workers, *(os.environ.get(name) for name in WORKER_ENVIRONMENT))

    def setup_for_execution(resource, _context) -> None:
        key = key_of(resource)
        if key not in _offline_pools:
            _offline_pools[key] = SharedWorkers(resource.workers)
        resource._workers = _offline_pools[key]

    def teardown_after_execution(resource, _context) -> None:
        if resource._workers is not None and any(not f.done() for f in resource._workers.futures):
            resource._workers.close()
            _offline_pools.pop(key_of(resource), None)

    monkeypatch.setattr(OfflineAnalysisResource, "setup_for_execution", setup_for_execution)
    monkeypatch.setattr(OfflineAnalysisResource, "teardown_after_execution", teardown_after_execution)


@pytest.fixture
def offline(offline_workers):
    from batch_pipeline.batch.offline import OfflineAnalyser

    return OfflineAnalyser(offline_workers, timeout_seconds=60)


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def batch_config(
    source: str | None = None,
    *,
    project: str = "test",
    model_key: str = "content_compliance",
    ai_model: str = "local",
    custom_instructions: str = "",
    **options,
) -> dict:
    config = {
        "project": project,
        "context": {"model_key": model_key, "ai_model": ai_model, "custom_instructions": custom_instructions},
        **options,
    }
    if source is not None:
        config["source"] = source
    return {"ops": {"create_document_records": {"config": config}}}


def run_job(instance, run_config: dict, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("document_batch_job")
    return job.execute_in_process(run_config=run_config, instance=instance, raise_on_error=raise_on_error)


def write_corpus(folder: Path, count: int, prefix: str = "doc") -> Path:
    """Small, distinct, realistic documents (each holds one e-mail address and a date)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"{prefix}_{i:04d}.md").write_text(
            f"# Memo {i}\n\nPlease contact user{i}@example.com about invoice {i}.\n\nShipped on 2024-05-{i % 28 + 1:02d}."
        )
    return folder


def with_llm(run_config: dict, **llm_config) -> dict:
    """Run config with llm resource settings. The endpoint and the key are the deployment's: tests
    set OPENAI_BASE_URL (see llm_endpoint) and OPENAI_API_KEY in the environment, as users do."""
    return {**run_config, "resources": {"llm": {"config": llm_config}}}


@contextlib.contextmanager
def llm_endpoint(base_url: str):
    """OPENAI_BASE_URL set for runs executed in this process."""
    with mock.patch.dict(os.environ, {"OPENAI_BASE_URL": base_url}):
        yield


@pytest.fixture
def key(monkeypatch) -> str:
    """The API key the loopback server accepts, in OPENAI_API_KEY as users set it."""
    secret = "sk-test-key"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    return secret


def llm_run(instance, server, corpus, raise_on_error=True, llm_options=None, **options) -> dg.ExecuteInProcessResult:
    """The job over a folder against the loopback server (ai_model gpt-test unless given)."""
    options.setdefault("ai_model", "gpt-test")
    run_config = with_llm(batch_config(str(corpus), **options), **(llm_options or {}))
    with llm_endpoint(server.url):
        return run_job(instance, run_config, raise_on_error=raise_on_error)


def register_memos(store: DocumentStore, run_id: str, context, count: int, project: str = "p") -> list[str]:
    """`count` short documents registered straight into the store for a run (as create_document_records
    would), for tests of what comes after registration; their ids."""
    texts = [f"Write to person{i}@example.com today." for i in range(count)]
    return register_texts(store, run_id, context, texts, project)


def register_texts(store: DocumentStore, run_id: str, context, texts: list[str], project: str = "p") -> list[str]:
    """These texts registered straight into the store for a run, as documents 0.md, 1.md, ...; their ids."""
    from batch_pipeline.documents.vetting import PreparedDocument, document_id

    docs = [
        PreparedDocument(
            document_id=document_id(project, f"h{i}"),
            filename=f"{i}.md",
            content_hash=f"h{i}",
            size_bytes=len(text),
            text=text,
            encoding="utf-8",
            problem=None,
            reason="",
        )  # fmt: skip
        for i, text in enumerate(texts)
    ]
    store.register_batch(run_id, project, context, docs)
    return [d.document_id for d in docs]


def stored_document_count() -> int:
    """Documents in the store of $BATCH_PIPELINE_HOME (or $BATCH_PIPELINE_DATABASE_URL)."""
    from batch_pipeline import settings

    store = DocumentStore(settings.database_url())
    try:
        store.create_schema()
        return store.count_documents()
    finally:
        store.close()


def rows_of(run_id: str):
    """A run's result rows from the store in $BATCH_PIPELINE_HOME, by filename."""
    from batch_pipeline import settings

    store = DocumentStore(settings.database_url())
    try:
        return store.results(run_id).set_index("filename")
    finally:
        store.close()


def dagster_execute(
    config_path: Path, dagster_home: Path | None, env: dict, tags: dict | None = None
) -> subprocess.Popen:
    run_env = {**env}
    if dagster_home is not None:
        dagster_home.mkdir(exist_ok=True)
        run_env["DAGSTER_HOME"] = str(dagster_home)
    else:
        run_env.pop("DAGSTER_HOME", None)
    command = [
        DAGSTER,
        "job",
        "execute",
        "-m",
        "batch_pipeline.definitions",
        "-j",
        "document_batch_job",
        "-c",
        str(config_path),
    ]
    if tags:
        command += ["--tags", json.dumps(tags)]
    return subprocess.Popen(
        command, cwd=REPO_ROOT, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def environment_without_settings() -> dict:
    """This process's environment without its BATCH_PIPELINE_ settings, for a process a test starts
    with its own; the allowed source roots stay (see source_roots)."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith("BATCH_PIPELINE_") or k == "BATCH_PIPELINE_SOURCE_ROOTS"
    }


@pytest.fixture
def shared_store_env(tmp_path) -> dict:
    env = environment_without_settings()
    env["BATCH_PIPELINE_DATABASE_URL"] = f"sqlite:///{tmp_path / 'shared_store.sqlite'}"
    env["BATCH_PIPELINE_REPORTS_DIR"] = str(tmp_path / "reports")
    return env


POSTGRES_ADMIN_URL = os.environ.get("BATCH_PIPELINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of a reachable PostgreSQL server; skips without one, except under CI=true."""
    import sqlalchemy as sa

    engine = sa.create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as e:
        _required_service_missing(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {str(e).splitlines()[0]}")
    finally:
        engine.dispose()
    return POSTGRES_ADMIN_URL


def _make_database(admin_url: str, purpose: str):
    import uuid

    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    name = f"bp_test_{purpose}_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()

    return url, drop


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request, tmp_path):
    """A fresh store on SQLite, and on PostgreSQL."""
    drop = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    else:
        url, drop = _make_database(request.getfixturevalue("postgres_server"), "store")
    store = DocumentStore(url)
    store.create_schema()
    yield store
    store.close()
    if drop:
        drop()


@pytest.fixture(scope="session")
def postgres_store_url(postgres_server) -> str:
    """A fresh database for the document store, dropped after the test session."""
    url, drop = _make_database(postgres_server, "store")
    yield url
    drop()


@pytest.fixture(scope="session")
def postgres_dagster_url(postgres_server) -> str:
    """A fresh database for Dagster's own storage, dropped after the test session."""
    url, drop = _make_database(postgres_server, "dagster")
    yield url
    drop()


@pytest.fixture(scope="session")
def dagster_services(tmp_path_factory):
    """dagster-webserver and dagster-daemon on a DAGSTER_HOME of their own, started once per test run:
    the modules using them share the xdist group "dagster_services", so one worker runs them all."""
    import shutil

    from dagster_graphql import DagsterGraphQLClient

    from batch_pipeline_tests.dagster_services import Services, webserver_and_daemon

    tmp_path = tmp_path_factory.mktemp("services")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home)
    env = environment_without_settings()
    env["DAGSTER_HOME"] = str(home)
    env["BATCH_PIPELINE_INBOX"] = str(tmp_path / "inbox")
    env["BATCH_PIPELINE_INBOX_INTERVAL_SECONDS"] = "1"
    with webserver_and_daemon(env, tmp_path) as url:
        port = int(url.rsplit(":", 1)[1])
        yield Services(DagsterGraphQLClient("127.0.0.1", port_number=port), port, home, env, tmp_path / "inbox")


# The fast tier (`make test-fast`, for the edit-test loop): no service, no subprocess, no job run.
# Everything else is marked slow here: tests that take a service or a job's fixtures, and the
# modules whose tests start processes or run the job (the full suite runs them all).
SLOW_FIXTURES = {
    "postgres_server", "postgres_store_url", "postgres_dagster_url", "redis_url", "broker", "dagster_services",
    "instance", "shared_store_env", "offline_workers", "offline", "tesseract",
}  # fmt: skip
SLOW_MODULES = {
    "test_benchmarks", "test_browser", "test_celery_workers", "test_concurrent_runs", "test_postgres",
    "test_real_model_server", "test_webserver", "test_job", "test_llm_job", "test_batch_api_job",
    "test_definitions", "test_conversion_job", "test_watch", "test_main", "test_executor", "test_triggers",
    "test_hostile_sources", "test_inbox", "test_sources_property", "test_detection_quality", "test_shared_pace",
    "test_learned_limits", "test_pace_state_loss", "test_rerun_after_a_fix", "test_stop_drains_in_flight",
    "test_spend_every_path", "test_bounded_outputs", "test_run_config_policy", "test_run_config_reads_no_environment",
    "test_nothing_skipped_silently", "test_sources_stay_inside_allowed_roots", "test_conversion_cleanup_and_memory",
    "test_worker", "test_packaging", "test_layout", "test_conversion", "test_suite_distribution",
    "test_asset_checks", "test_comparison_launch", "test_docs", "test_readme_walkthrough",
}  # fmt: skip


# Parametrised fixtures that reach a service through request.getfixturevalue: their service cases.
SERVICE_PARAMETERS = {"postgresql", "redis"}


def _module_of(item) -> str:
    return item.module.__name__.rsplit(".", 1)[-1] if item.module else ""


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = _module_of(item)
        callspec = getattr(item, "callspec", None)
        on_a_service = callspec is not None and SERVICE_PARAMETERS & {str(v) for v in callspec.params.values()}
        if module in SLOW_MODULES or on_a_service or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
