"""Each run setting is declared once, on a plain model (type, default, description); the Dagster
config the Launchpad shows is derived from it, so the two cannot drift and a new setting is one edit."""

import dagster as dg
import pytest
from pydantic import BaseModel, Field

from batch_pipeline.batch.request import BatchRequest
from batch_pipeline.defs.config import LAUNCHPAD_OVERRIDES, BatchConfig, ModelKey
from batch_pipeline.defs.config_classes import config_class
from batch_pipeline.defs.resources import LlmResource
from batch_pipeline.defs.triggers.inbox_sensor import InboxConfig
from batch_pipeline.documents.inbox import InboxDefaults
from batch_pipeline.llm.options import LlmOptions


def launchpad_fields(config: type[dg.Config]) -> dict:
    return config.to_config_schema().as_field().config_type.fields


def assert_shown_as_declared(fields: dict, model: type[BaseModel]) -> None:
    assert set(fields) == set(model.model_fields)
    for name, info in model.model_fields.items():
        shown = fields[name]
        if (model, name) in dict(LAUNCHPAD_OVERRIDES):
            continue  # checked by test_model_key_is_offered_as_the_loaded_analyses
        assert shown.description == info.description, name
        assert shown.is_required == info.is_required(), name
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        if default is not None:
            default = default.model_dump() if isinstance(default, BaseModel) else getattr(default, "value", default)
            assert shown.default_value == default, name
        nested = info.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            assert_shown_as_declared(shown.config_type.fields, nested)


@pytest.mark.parametrize(
    ("config", "model"), [(BatchConfig, BatchRequest), (LlmResource, LlmOptions), (InboxConfig, InboxDefaults)]
)
def test_the_launchpad_shows_every_setting_as_its_plain_model_declares_it(config, model):
    assert_shown_as_declared(launchpad_fields(config), model)


def test_a_setting_added_to_the_plain_model_reaches_the_launchpad_and_the_plain_code():
    class Wider(BatchRequest):
        pages_per_chunk: int = Field(default=7, description="A new setting, declared once.")

    form = config_class(Wider)
    assert launchpad_fields(form)["pages_per_chunk"].default_value == 7
    given = form(project="p", source="docs", context={"model_key": "content_compliance", "ai_model": "local"})
    assert Wider.model_validate(given.model_dump()).pages_per_chunk == 7


def test_the_op_receives_exactly_what_the_run_config_says():
    config = BatchConfig(
        project="p",
        documents=[{"filename": "a.md", "markdown_content": "# A"}],
        context={"model_key": "document_metadata", "ai_model": "gpt-x", "custom_instructions": "c"},
        max_pages=3,
        llm_api="batch",
    )
    request = config.to_request()
    assert request.inline_documents == [("a.md", "# A")] and request.max_pages == 3
    assert request.context.custom_instructions == "c" and request.llm_api.value == "batch"
    assert LlmResource(max_repairs=0).provider().settings.max_repairs == 0


def test_model_key_is_offered_as_the_loaded_analyses_each_with_its_description():
    from batch_pipeline.analysis.registry import catalogue

    shown = launchpad_fields(BatchConfig)["context"].config_type.fields["model_key"]
    assert [value.config_value for value in shown.config_type.enum_values] == [k.value for k in ModelKey]
    assert [k.value for k in ModelKey] == catalogue().offered_keys
    for analysis in catalogue().analyses.values():
        assert f"{analysis.key}: {analysis.description}" in shown.description
