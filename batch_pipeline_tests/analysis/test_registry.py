import pytest

from batch_pipeline.analysis import REGISTRY, get_model
from batch_pipeline_tests.conftest import EXAMPLE_DOCS


@pytest.mark.parametrize("key", list(REGISTRY))
def test_each_model_is_complete_and_its_offline_output_fits_its_schema(key):
    model = REGISTRY[key]
    assert model.key == key
    assert model.description and "\n" not in model.description
    assert len(model.system_prompt) > 100
    schema = model.result_schema.model_json_schema()
    assert schema["additionalProperties"] is False  # strict JSON-schema response formats need it
    for path in sorted(EXAMPLE_DOCS.glob("*.md"))[:5]:
        result = model.analyse_offline(path.read_text())
        assert model.parse_result(result.model_dump_json()) == result
    assert isinstance(model.summarize([model.analyse_offline("# T\n\nHello there, world.")]), dict)


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(KeyError, match="content_compliance, document_metadata"):
        get_model("sentiment")
