"""Whoever may launch a run cannot read an environment variable of the run's process through run
config: every field of the job's schema (generated from it, so a field added later is covered)
refuses ``{env: NAME}`` at launch, before a run is stored, without the value in the error."""

import dagster as dg
import pytest

from batch_pipeline.definitions import defs
from batch_pipeline.defs.launch_schema import reads_environment
from batch_pipeline_tests.conftest import batch_config, run_job, stored_document_count, write_corpus
from batch_pipeline_tests.trust_boundary.schema_fields import ITEM, declared_leaves, leaves

SECRET_NAME = "BATCH_PIPELINE_TEST_DEPLOY_SECRET"
SECRET_VALUE = "deploy-secret-7c1e"


def job() -> dg.JobDefinition:
    return defs.resolve_job_def("document_batch_job")


def environment_fields(config_type) -> list[tuple]:
    """(path, type) of every place in a config schema whose value may be {env: NAME}."""
    return [(path, leaf) for path, leaf in leaves(config_type) if reads_environment(leaf)]


def placed(path: tuple, value: object) -> object:
    """A config that is `value` at `path` (and only that)."""
    if not path:
        return value
    inner = placed(path[1:], value)
    return [inner] if path[0] == ITEM else {path[0]: inner}


def merged(base: object, extra: object) -> object:
    if isinstance(base, dict) and isinstance(extra, dict):
        return {**base, **{k: merged(base[k], v) if k in base else v for k, v in extra.items()}}
    return extra


def errors_at(run_config: dict, path: tuple) -> list[str]:
    """The messages of the config errors at `path` (none: the value there is accepted)."""
    fields = [step for step in path if step != ITEM]
    try:
        dg.validate_run_config(job(), run_config)
    except dg.DagsterInvalidConfigError as e:
        return [
            error.message
            for error in e.errors
            if [entry.field_name for entry in error.stack.entries if hasattr(entry, "field_name")] == fields
        ]
    return []


SCALAR_SAMPLES = {"String": "plain", "Int": 1, "Bool": False}


def test_dagsters_schema_would_read_the_environment_in_many_fields():
    """The inner schema (Dagster's own, behind the job's ConfigMapping) has such fields, ours and
    Dagster's: without the launch schema every one of them could read a secret."""
    inner = job().run_config_schema.run_config_schema_type
    names = {path[-1] for path, _ in environment_fields(inner)}
    assert {"project", "custom_instructions", "ai_model", "source", "filename", "base_url", "workers"} <= names


def test_no_field_of_the_launch_schema_takes_its_value_from_the_environment():
    outer = job().run_config_schema.config_type
    assert environment_fields(outer) == []


@pytest.mark.parametrize("job_name", [job.name for job in defs.get_repository_def().get_all_jobs()])
def test_no_job_of_the_code_location_takes_a_value_from_the_environment(job_name):
    """A job added later is covered too (compare_contexts_job, the asset job, ...)."""
    schema = defs.resolve_job_def(job_name).run_config_schema.config_type
    assert [path for path, leaf in declared_leaves(schema) if reads_environment(leaf)] == []


def test_materialize_launches_a_job_whose_schema_reads_no_environment_either():
    """The asset job behind analysed_documents' Materialize is Dagster's own (no ConfigMapping wraps
    it): its op config, resources and executor are built without {env: ...} and deployment-only fields."""
    schema = defs.resolve_implicit_global_asset_job_def().run_config_schema.config_type
    found = declared_leaves(schema)
    paths = [path for path, _ in found]
    assert ("resources", "llm", "config", "base_url") in paths
    assert any(path[:2] == ("ops", "batch_pipeline__analysed_documents") for path in paths)
    assert [path for path, leaf in found if reads_environment(leaf)] == []
    assert not {"marker_to_close", "preload_modules"} & {step for path in paths for step in path}


@pytest.mark.parametrize(
    ("path", "config_type"),
    [
        pytest.param(path, kind, id=".".join(path))
        for path, kind in environment_fields(job().run_config_schema.run_config_schema_type)
    ],
)
def test_each_field_refuses_env_at_launch_and_accepts_a_plain_value(path, config_type, monkeypatch, tmp_path):
    kind = config_type.scalar_type.given_name
    secret = {"String": SECRET_VALUE, "Int": "7431", "Bool": "true"}[kind]  # a value the field's type takes
    monkeypatch.setenv(SECRET_NAME, secret)
    base = batch_config(str(tmp_path), ai_model="local")
    plain = merged(base, placed(path, SCALAR_SAMPLES[kind]))
    # The same place takes a plain value (so the refusal below is about {env: ...}, not the path).
    assert errors_at(plain, path) == [], errors_at(plain, path)
    refused = errors_at(merged(base, placed(path, {"env": SECRET_NAME})), path)
    assert refused, f"{path} accepted {{env: ...}}"
    assert not any(secret in message for message in refused)


def test_a_secret_named_in_run_config_reaches_no_run_store_or_report(pipeline_home, instance, tmp_path, monkeypatch):
    """The audit's reproduction: custom_instructions and project as {env: DEPLOY_SECRET} with the
    offline analysers succeeded and put the value in the store, the reports and the event log."""
    monkeypatch.setenv(SECRET_NAME, SECRET_VALUE)
    corpus = write_corpus(tmp_path / "corpus", 2)
    for key, value in (("custom_instructions", {"env": SECRET_NAME}), ("project", {"env": SECRET_NAME})):
        run_config = batch_config(str(corpus), ai_model="local")
        section = run_config["ops"]["create_document_records"]["config"]
        if key == "project":
            section["project"] = value
        else:
            section["context"]["custom_instructions"] = value
        with pytest.raises(dg.DagsterInvalidConfigError) as refusal:
            run_job(instance, run_config)
        assert SECRET_VALUE not in str(refusal.value)
    assert instance.get_runs() == []
    assert stored_document_count() == 0
    assert not any(
        SECRET_VALUE in path.read_text(errors="ignore") for path in pipeline_home.rglob("*") if path.is_file()
    )
