"""Whoever may launch a run does not thereby get the deployment's secrets or its file system: the
key is $OPENAI_API_KEY only, endpoints are the deployment's, the store's location is not run config."""

import dagster as dg
import pytest

from batch_pipeline import settings
from batch_pipeline.definitions import defs
from batch_pipeline.defs.assets import ASSET_NODE
from batch_pipeline_tests.conftest import (
    batch_config,
    llm_endpoint,
    run_job,
    stored_document_count,
    with_llm,
    write_corpus,
)
from batch_pipeline_tests.trust_boundary.schema_fields import declared_leaves, leaves
from testbed.fake_openai_server import FakeOpenAIServer


@pytest.fixture
def key(monkeypatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    return "sk-test-key"


def test_run_config_cannot_name_the_key_or_where_the_store_lives(pipeline_home, instance, key, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 2)
    elsewhere = tmp_path / "elsewhere" / "x.db"
    for resources in (
        {"llm": {"config": {"api_key": {"env": "OPENAI_API_KEY"}, "base_url": "http://any-host.invalid/v1"}}},
        {"llm": {"config": {"api_key": {"env": "HOME"}}}},
        {"document_store": {"config": {"database_url": f"sqlite:///{elsewhere}"}}},
    ):
        run_config = {**batch_config(str(corpus), ai_model="gpt-test"), "resources": resources}
        with pytest.raises(dg.DagsterInvalidConfigError, match="api_key|database_url"):
            run_job(instance, run_config)
    assert instance.get_runs() == []  # refused at launch: no run stored
    assert not elsewhere.parent.exists()


def test_an_endpoint_the_deployment_did_not_allow_is_refused_before_any_request(
    pipeline_home, instance, key, tmp_path, monkeypatch
):
    corpus = write_corpus(tmp_path / "corpus", 3)
    monkeypatch.setenv("STOLEN_VALUE", "sk-other-secret-0123456789")
    with FakeOpenAIServer() as deployment, FakeOpenAIServer() as attacker, llm_endpoint(deployment.url):
        run_config = with_llm(batch_config(str(corpus), ai_model="gpt-test"), base_url=attacker.url)
        result = run_job(instance, run_config, raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        message = failure.event_specific_data.error.message
        assert "not an endpoint this deployment allows" in message and attacker.url not in message
        with pytest.raises(dg.DagsterInvalidConfigError) as refusal:  # refused at launch: the value is never read
            run_job(
                instance, with_llm(batch_config(str(corpus), ai_model="gpt-test"), base_url={"env": "STOLEN_VALUE"})
            )
        assert "sk-other-secret" not in str(refusal.value)
        assert attacker.requests == [] and deployment.requests == []
    for run in instance.get_runs():
        assert not any("sk-other-secret" in (e.message or "") for e in instance.all_logs(run.run_id))
    assert stored_document_count() == 0


def test_an_endpoint_the_deployment_allows_may_be_chosen(pipeline_home, instance, key, tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "corpus", 3)
    with FakeOpenAIServer() as default, FakeOpenAIServer() as second, llm_endpoint(default.url):
        monkeypatch.setenv("BATCH_PIPELINE_LLM_BASE_URLS", f"http://unused.invalid/v1, {second.url}/")
        result = run_job(instance, with_llm(batch_config(str(corpus), ai_model="gpt-test"), base_url=second.url))
    assert result.success
    assert default.requests == [] and len(second.requests) == 4  # the probe and three documents


@pytest.mark.parametrize(
    "environment, requested, expected",
    [
        ({}, None, "https://api.openai.com/v1"),
        ({"OPENAI_BASE_URL": "http://llm.internal/v1/"}, None, "http://llm.internal/v1"),
        ({"OPENAI_BASE_URL": "http://llm.internal/v1"}, "http://llm.internal/v1/", "http://llm.internal/v1"),
        ({"BATCH_PIPELINE_LLM_BASE_URLS": "http://a/v1,http://b/v1"}, "http://b/v1", "http://b/v1"),
        ({"BATCH_PIPELINE_LLM_BASE_URLS": "http://a/v1"}, "http://c/v1", None),
    ],
)
def test_llm_base_url(monkeypatch, environment, requested, expected):
    for name in ("OPENAI_BASE_URL", "BATCH_PIPELINE_LLM_BASE_URLS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    if expected is None:
        with pytest.raises(settings.NotAllowed):
            settings.llm_base_url(requested)
    else:
        assert settings.llm_base_url(requested) == expected


@pytest.mark.parametrize(
    "environment, expected",
    [
        (None, None),  # one budget per process
        ("redis://:secret@cache:6379/0", "redis://:secret@cache:6379/0"),  # a password through the environment
        ("http://cache:6379", "refused"),
    ],
)
def test_the_pace_state_is_the_deployments(monkeypatch, environment, expected):
    if environment is None:
        monkeypatch.delenv("BATCH_PIPELINE_RATE_LIMIT_URL", raising=False)
    else:
        monkeypatch.setenv("BATCH_PIPELINE_RATE_LIMIT_URL", environment)
    if expected == "refused":
        with pytest.raises(settings.NotAllowed, match="BATCH_PIPELINE_RATE_LIMIT_URL"):
            settings.rate_limit_url()
    else:
        assert settings.rate_limit_url() == expected


# Every text field a launcher may set, and why it cannot name a host, a path or a secret the
# deployment did not allow. A text field added later fails the test below until it is placed here.
TEXT_FIELDS = {
    "ops.create_document_records.config.project": "a label",
    "ops.create_document_records.config.source": "a path, resolved inside $BATCH_PIPELINE_SOURCE_ROOTS",
    "ops.create_document_records.config.documents.[].filename": "a label",
    "ops.create_document_records.config.documents.[].markdown_content": "the document itself",
    "ops.create_document_records.config.context.ai_model": "a model name, sent to the deployment's endpoint",
    "ops.create_document_records.config.context.custom_instructions": "prompt text",
    "ops.create_document_records.config.ocr_languages": "Tesseract language codes, checked at launch",
    "ops.create_document_records.config.checks.labels": "a path, resolved inside $BATCH_PIPELINE_SOURCE_ROOTS",
    "resources.llm.config.base_url": "an endpoint, only among those the deployment lists",
    "execution.config.celery.queue": "a queue name on the deployment's broker",
    "execution.config.multiprocess.tag_concurrency_limits.[].key": "a run tag's name",
    "loggers.console.config.log_level": "a log level",
    "loggers.console.config.name": "a logger's name",
}


def text_fields(found: list[tuple]) -> list[str]:
    return [".".join(path) for path, leaf in found if getattr(leaf, "given_name", None) == "String"]


def test_every_text_field_a_launcher_sets_is_known_to_name_no_host_or_path_of_its_choosing():
    """Run config names no broker, result backend, pace state, IO-manager folder or Celery
    setting: those are the deployment's environment."""
    job = defs.resolve_job_def("document_batch_job")
    assert sorted(text_fields(leaves(job.run_config_schema.config_type))) == sorted(TEXT_FIELDS)


def test_materialize_offers_the_same_text_fields_and_no_other():
    """The asset job behind Materialize: the batch's settings one level up, the same resources."""
    schema = defs.resolve_implicit_global_asset_job_def().run_config_schema.config_type
    asset_fields = [field.replace(f"ops.{ASSET_NODE}.config.", "ops.create_document_records.config.")
                    for field in text_fields(declared_leaves(schema))]  # fmt: skip
    # Its inbox resource (the inbox sensor's defaults) comes with the code location's resources.
    inbox = {field for field in asset_fields if field.startswith("resources.inbox.")}
    assert inbox == {f"resources.inbox.config.{name}" for name in ("project", "model_key", "ai_model", "custom_instructions", "priority")}  # fmt: skip
    assert sorted(set(asset_fields) - inbox) == sorted(TEXT_FIELDS)


@pytest.mark.parametrize(
    "section",
    [
        {"execution": {"config": {"celery": {"broker": "pyamqp://attacker.example//"}}}},
        {"execution": {"config": {"celery": {"backend": "redis://attacker.example:6379/0"}}}},
        {"execution": {"config": {"celery": {"config_source": {"broker_url": "pyamqp://u:pw@attacker//"}}}}},
        {"execution": {"config": {"in_process": {"marker_to_close": "/etc/passwd"}}}},
        {"execution": {"config": {"multiprocess": {"start_method": {"forkserver": {"preload_modules": ["os"]}}}}}},
        {"resources": {"llm": {"config": {"rate_limit_url": "redis://127.0.0.1:6390/0"}}}},
        {"resources": {"io_manager": {"config": {"base_dir": "/etc"}}}},
    ],
    ids=lambda section: str(section)[:60],
)
def test_hosts_and_folders_are_refused_in_run_config_at_launch(section, instance, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 1)
    with pytest.raises(dg.DagsterInvalidConfigError, match="unexpected config entry"):
        run_job(instance, {**batch_config(str(corpus)), **section})
    assert instance.get_runs() == []


def test_a_budget_tag_set_by_hand_cannot_draw_on_another_runs_budget(pipeline_home, instance, tmp_path):
    """Tags are the launcher's too: batch_pipeline/budget_of_run naming a run this run does not
    resume is refused before anything is written (only `batch-pipeline resume` sets it)."""
    from batch_pipeline.defs.tags import BUDGET_RUN_TAG, RESUMED_FROM_TAG

    corpus = write_corpus(tmp_path / "corpus", 2)
    victim = run_job(instance, batch_config(str(corpus), project="victim"))
    job = defs.resolve_job_def("document_batch_job")
    for tags in ({BUDGET_RUN_TAG: victim.run_id}, {BUDGET_RUN_TAG: victim.run_id, RESUMED_FROM_TAG: victim.run_id}):
        forged = job.execute_in_process(
            run_config=batch_config(str(corpus), project="thief"), instance=instance, tags=tags, raise_on_error=False
        )
        assert not forged.success
        failure = next(e for e in forged.all_events if e.is_step_failure)
        assert "only `batch-pipeline resume` sets it" in failure.event_specific_data.error.message
    assert stored_document_count() == 2  # the victim's, nothing of the forged runs
