"""The catalogue: the built-ins through the entry-point group, the deployment's folders, and a bad
definition that takes nothing else down."""

from pathlib import Path

import pytest

from batch_pipeline.analysis.registry import UnknownAnalysis, catalogue, load_catalogue
from batch_pipeline_tests.analysis.sample_definition import VALID
from batch_pipeline_tests.conftest import EXAMPLE_DOCS

EXAMPLES = Path(__file__).parents[2] / "examples" / "analyses"


@pytest.mark.parametrize("key", ["content_compliance", "document_metadata"])
def test_each_built_in_is_a_definition_file_with_its_offline_analyser_attached_in_code(key):
    analysis = catalogue().get(key)
    assert analysis.key == key and analysis.offline is not None
    assert analysis.definition.origin.endswith(f"batch_pipeline/analysis/{key}.yaml")
    assert analysis.description and "\n" not in analysis.description
    assert len(analysis.system_prompt("")) > 100
    assert analysis.json_schema["additionalProperties"] is False  # strict JSON-schema response formats need it
    for path in sorted(EXAMPLE_DOCS.glob("*.md"))[:5]:
        result = analysis.analyse_offline(path.read_text())  # validated against the definition's schema
        assert analysis.parse_result(result.model_dump_json()) == result
    summary = analysis.definition.summary.summarise(
        [analysis.analyse_offline("# T\n\nHello there, world.").model_dump()]
    )
    assert summary and all(isinstance(values, dict) for values in summary.values())


def test_a_folder_adds_its_definitions_beside_the_built_ins():
    loaded = load_catalogue([EXAMPLES])
    assert set(loaded.analyses) == {"content_compliance", "document_metadata", "contract_terms",
                                    "invoice_fields", "support_ticket_triage"}  # fmt: skip
    assert loaded.with_offline_analyser == ["content_compliance", "document_metadata"]
    assert not loaded.broken


def test_one_bad_file_is_named_with_its_line_and_the_others_load(tmp_path):
    (tmp_path / "good.yaml").write_text(VALID)
    (tmp_path / "bad.yaml").write_text(VALID.replace("{% endif %}", "{% endfi %}"))
    (tmp_path / "notes.txt").write_text("not a definition")
    loaded = load_catalogue([tmp_path], packages=False)
    assert list(loaded.analyses) == ["good"]
    [broken] = loaded.broken
    assert broken.key == "bad" and f"{tmp_path / 'bad.yaml'}:4: prompt: template error" in broken.error
    assert loaded.offered_keys == ["bad", "good"]  # a launch naming it is refused with the error
    with pytest.raises(UnknownAnalysis, match="model_key 'bad' cannot be used: .*bad.yaml:4"):
        loaded.get("bad")
    with pytest.raises(UnknownAnalysis, match="unknown model_key 'nope'; valid keys: good"):
        loaded.get("nope")


def test_two_definitions_of_one_key_load_neither_and_name_both(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        folder.mkdir()
        (folder / "triage.yaml").write_text(VALID)
    loaded = load_catalogue([first, second], packages=False)
    assert not loaded.analyses
    assert {b.origin for b in loaded.broken} == {str(first / "triage.yaml"), str(second / "triage.yaml")}
    assert all("also defined by" in b.error for b in loaded.broken)


def test_a_missing_folder_is_reported_not_fatal(tmp_path):
    loaded = load_catalogue([tmp_path / "gone", EXAMPLES], packages=False)
    assert "contract_terms" in loaded.analyses
    assert any("BATCH_PIPELINE_ANALYSES names a folder that is not there" in b.error for b in loaded.broken)


def test_the_folders_come_from_the_environment_only(tmp_path, monkeypatch):
    (tmp_path / "triage.yaml").write_text(VALID)
    monkeypatch.setenv("BATCH_PIPELINE_ANALYSES", f"{tmp_path}:{EXAMPLES}:{tmp_path}/")  # one folder twice: read once
    assert {"triage", "contract_terms"} <= set(load_catalogue().analyses) and not load_catalogue().broken
    monkeypatch.delenv("BATCH_PIPELINE_ANALYSES")
    assert set(load_catalogue().analyses) == {"content_compliance", "document_metadata"}


def test_the_code_location_s_log_names_a_definition_it_could_not_load(tmp_path, caplog):
    (tmp_path / "bad.yaml").write_text("description: x\nprompt: '{{'\nschema: {type: object}\n")
    with caplog.at_level("WARNING", logger="batch_pipeline.analysis.registry"):
        load_catalogue([tmp_path], packages=False)
    assert "analysis definition not loaded: " in caplog.text
    assert f"{tmp_path / 'bad.yaml'}:2: prompt: template error" in caplog.text
