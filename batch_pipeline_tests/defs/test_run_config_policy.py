"""Whoever may launch a run does not thereby get the deployment's secrets or its file system: the
key is $OPENAI_API_KEY only, endpoints are the deployment's, the store's location is not run config."""

import dagster as dg
import pytest

from batch_pipeline import settings
from batch_pipeline.store import DocumentStore
from batch_pipeline_tests.conftest import batch_config, llm_endpoint, run_job, with_llm, write_corpus
from batch_pipeline_tests.fake_openai_server import FakeOpenAIServer


@pytest.fixture
def key(monkeypatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    return "sk-test-key"


def stored_documents() -> int:
    store = DocumentStore(settings.database_url())
    try:
        store.create_schema()
        return store.count_documents()
    finally:
        store.close()


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
        for base_url in (attacker.url, {"env": "STOLEN_VALUE"}):
            run_config = with_llm(batch_config(str(corpus), ai_model="gpt-test"), base_url=base_url)
            result = run_job(instance, run_config, raise_on_error=False)
            assert not result.success
            failure = next(e for e in result.all_events if e.is_step_failure)
            message = failure.event_specific_data.error.message
            assert "not an endpoint this deployment allows" in message
            assert attacker.url not in message and "sk-other-secret" not in message
        assert attacker.requests == [] and deployment.requests == []
    for run in instance.get_runs():
        assert not any("sk-other-secret" in (e.message or "") for e in instance.all_logs(run.run_id))
    assert stored_documents() == 0


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
    "environment, requested, expected",
    [
        (None, None, None),  # one budget per process
        ("redis://:secret@cache:6379/0", None, "redis://:secret@cache:6379/0"),  # the password from the environment
        ("redis://cache:6379/0", "redis://other:6379/1", "redis://other:6379/1"),
        (None, "redis://:secret@cache:6379/0", "refused"),  # run config is stored: no password in it
        (None, "http://cache:6379", "refused"),
    ],
)
def test_rate_limit_url(monkeypatch, environment, requested, expected):
    if environment is None:
        monkeypatch.delenv("BATCH_PIPELINE_RATE_LIMIT_URL", raising=False)
    else:
        monkeypatch.setenv("BATCH_PIPELINE_RATE_LIMIT_URL", environment)
    if expected == "refused":
        with pytest.raises(settings.NotAllowed) as refusal:
            settings.rate_limit_url(requested)
        assert "secret" not in str(refusal.value)
    else:
        assert settings.rate_limit_url(requested) == expected
