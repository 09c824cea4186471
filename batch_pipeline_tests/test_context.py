import importlib.metadata

import dagster as dg
import pytest

from batch_pipeline.analysis.analysis import distribution_version
from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.context import PinnedContext, ProcessingContext
from batch_pipeline.defs.config import ModelKey
from batch_pipeline.defs.config_classes import config_class
from batch_pipeline.defs.tags import run_tags


def make(**overrides) -> PinnedContext:
    fields = {"model_key": "content_compliance", "ai_model": "local", "custom_instructions": ""}
    return ProcessingContext(**{**fields, **overrides}).pinned(catalogue())


def test_the_launchpad_offers_every_analysis_the_deployment_loaded():
    assert [k.value for k in ModelKey] == catalogue().offered_keys


def test_an_edited_definition_changes_the_cache_key_and_an_unchanged_one_keeps_it():
    context = make(ai_model="gpt-x")
    same = context.model_copy(update={"definition": context.definition.model_copy()})
    assert same.cache_key() == context.cache_key()
    edited_definition = type(context.definition).model_validate(
        {**context.definition.model_dump(by_alias=True), "prompt": context.definition.prompt + " Be thorough."}
    )
    edited = PinnedContext(**context.unpinned().model_dump(), definition=edited_definition)
    assert edited.cache_key() != context.cache_key()
    assert edited.analyser_version == edited_definition.digest[:16] != context.analyser_version


@pytest.mark.parametrize(
    "change",
    [
        {"model_key": "document_metadata"},
        {"ai_model": "gpt-4.1-mini"},
        {"custom_instructions": "Be strict."},
    ],
)
def test_every_context_field_changes_the_cache_key(change):
    assert make().cache_key() != make(**change).cache_key()
    assert make(**change).cache_key() == make(**change).cache_key()


def test_ai_model_has_no_default():
    with pytest.raises(Exception, match="ai_model"):
        ProcessingContext(model_key="content_compliance")


def test_run_tags_name_the_model_key_and_ai_model_and_the_project():
    assert run_tags(make(ai_model="gpt-x"), project="claims") == {
        "batch_pipeline/model_key": "content_compliance",
        "batch_pipeline/ai_model": "gpt-x",
        "batch_pipeline/project": "claims",
    }


def test_the_run_config_form_is_a_dagster_config_that_yields_the_context():
    form = config_class(ProcessingContext)
    config = form(model_key="document_metadata", ai_model="gpt-x", custom_instructions="c")
    assert isinstance(config, dg.Config)
    assert ProcessingContext.model_validate(config.model_dump()) == ProcessingContext(
        model_key="document_metadata", ai_model="gpt-x", custom_instructions="c"
    )


def test_offline_results_follow_the_versions_of_the_libraries_whose_data_they_use(monkeypatch):
    local, llm = make(), make(ai_model="gpt-x")
    before_local, before_llm = local.cache_key(), llm.cache_key()
    assert local.analyser_version.startswith(local.model.version + "+")
    assert local.model.offline.data_packages == ("phonenumbers", "detect-secrets", "python-stdnum")

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
