from pathlib import Path

import dagster as dg
import pytest

from batch_pipeline.definitions import defs
from batch_pipeline.store import DocumentStore

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_DOCS = REPO_ROOT / "examples" / "docs"


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
