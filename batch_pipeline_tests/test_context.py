import importlib.metadata

import dagster as dg
import pytest

from batch_pipeline.analysis import REGISTRY, distribution_version
from batch_pipeline.context import ModelKey, ProcessingContext
from batch_pipeline.defs.config_classes import config_class
from batch_pipeline.defs.tags import run_tags


def make(**overrides) -> ProcessingContext:
    fields = {"model_key": ModelKey.content_compliance, "ai_model": "local", "custom_instructions": ""}
    return ProcessingContext(**{**fields, **overrides})


def test_model_key_enum_is_the_registry():
    assert [k.value for k in ModelKey] == list(REGISTRY)


@pytest.mark.parametrize(
    "change",
    [
        {"model_key": ModelKey.document_metadata},
        {"ai_model": "gpt-4.1-mini"},
        {"custom_instructions": "Be strict."},
    ],
)
def test_every_context_field_changes_the_cache_key(change):
    assert make().cache_key() != make(**change).cache_key()
    assert make(**change).cache_key() == make(**change).cache_key()


def test_ai_model_has_no_default():
    with pytest.raises(Exception, match="ai_model"):
        ProcessingContext(model_key=ModelKey.content_compliance)


def test_run_tags_name_the_model_key_and_ai_model():
    assert run_tags(make(ai_model="gpt-x")) == {
        "batch_pipeline/model_key": "content_compliance",
        "batch_pipeline/ai_model": "gpt-x",
    }


def test_the_run_config_form_is_a_dagster_config_that_yields_the_context():
    form = config_class(ProcessingContext)
    config = form(model_key=ModelKey.document_metadata, ai_model="gpt-x", custom_instructions="c")
    assert isinstance(config, dg.Config)
    assert ProcessingContext.model_validate(config.model_dump()) == make(
        model_key=ModelKey.document_metadata, ai_model="gpt-x", custom_instructions="c"
    )


def test_offline_results_follow_the_versions_of_the_libraries_whose_data_they_use(monkeypatch):
    local, llm = make(), make(ai_model="gpt-x")
    before_local, before_llm = local.cache_key(), llm.cache_key()
    assert local.analyser_version.startswith(local.model.version + "+")
    assert local.model.offline_data_packages == ("phonenumbers", "detect-secrets", "python-stdnum")

    installed = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata, "version", lambda name: "99.0" if name == "detect-secrets" else installed(name)
    )
    distribution_version.cache_clear()
    try:
        assert local.cache_key() != before_local
        assert llm.cache_key() == before_llm  # an LLM's answers do not depend on detect-secrets' patterns
    finally:
        monkeypatch.undo()
        distribution_version.cache_clear()
    assert local.cache_key() == before_local
