"""The answer model built from a definition's schema: it takes what the schema allows and nothing else."""

import pytest
from pydantic import ValidationError

from batch_pipeline.analysis.json_schema import result_model, strict_subset_problems

SCHEMA = {
    "type": "object",
    "properties": {
        "kind": {"type": "string", "enum": ["a", "b"]},
        "when": {"type": ["string", "null"], "format": "date"},
        "count": {"type": "integer", "minimum": 0, "maximum": 10},
        "ok": {"type": "boolean"},
        "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "items": {
            "type": "array",
            "maxItems": 2,
            "items": {"type": "object", "properties": {"n": {"type": "number"}}, "required": ["n"],
                      "additionalProperties": False},
        },
    },
    "required": ["kind", "when", "count", "ok", "code", "items"],
    "additionalProperties": False,
}  # fmt: skip
GOOD = {"kind": "a", "when": "2024-02-29", "count": 3, "ok": True, "code": "EUR", "items": [{"n": 1.5}]}


def test_the_schema_is_in_the_strict_subset_and_a_fitting_answer_validates():
    assert strict_subset_problems(SCHEMA) == []
    model = result_model(SCHEMA, "t")
    assert model.model_validate(GOOD).model_dump(mode="json") == GOOD
    assert model.model_validate({**GOOD, "when": None}).model_dump()["when"] is None


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "c"},
        {"when": "2024-02-30"},
        {"count": 11},
        {"ok": "yes"},
        {"code": "eur"},
        {"items": [{"n": 1}, {"n": 2}, {"n": 3}]},
        {"items": [{"n": 1, "extra": 2}]},
        {"extra": 1},
    ],
)
def test_an_answer_outside_the_schema_is_refused(change):
    with pytest.raises(ValidationError):
        result_model(SCHEMA, "t").model_validate({**GOOD, **change})


def test_a_missing_nullable_field_is_refused_not_defaulted():
    answer = {k: v for k, v in GOOD.items() if k != "when"}
    with pytest.raises(ValidationError, match="when"):
        result_model(SCHEMA, "t").model_validate(answer)


def test_the_store_s_own_key_cannot_be_a_field():
    schema = {**SCHEMA, "properties": {**SCHEMA["properties"], "omitted": {"type": "string"}},
              "required": [*SCHEMA["required"], "omitted"]}  # fmt: skip
    assert any("store's own key" in p.message for p in strict_subset_problems(schema))
