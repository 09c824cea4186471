import dagster as dg
import pytest

from batch_pipeline.analysis_models import REGISTRY
from batch_pipeline.context import ModelKey, ProcessingContext


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
    assert make(ai_model="gpt-x").run_tags() == {
        "batch_pipeline/model_key": "content_compliance",
        "batch_pipeline/ai_model": "gpt-x",
    }


def test_context_is_a_dagster_config():
    assert issubclass(ProcessingContext, dg.Config)
