"""Definition files: what loads, what is refused (named by file and line), and what the digest covers."""

import json
import uuid
from pathlib import Path

import pytest

from batch_pipeline.analysis.analysis import compiled
from batch_pipeline.analysis.definition import DefinitionInvalid, parse_definition, read_definition
from batch_pipeline_tests.analysis.sample_definition import VALID

EXAMPLES = Path(__file__).parents[2] / "examples" / "analyses"


def problems_of(text: str) -> list[tuple[int | None, str]]:
    with pytest.raises(DefinitionInvalid) as caught:
        parse_definition(text, "triage.yaml", default_key="triage")
    return [(p.line, p.message) for p in caught.value.problems]


def test_a_valid_file_loads_with_its_key_from_the_file_name():
    definition = parse_definition(VALID, "triage.yaml", default_key="triage")
    assert definition.key == "triage" and definition.origin == "triage.yaml"
    assert list(definition.output_schema["properties"]) == ["category", "urgent", "product", "tags", "score"]
    analysis = compiled(definition)
    assert analysis.fields == {"category": "enum", "urgent": "boolean", "product": "string", "tags": "array",
                               "score": "number"}  # fmt: skip


def test_the_prompt_gets_custom_instructions_as_a_value_never_as_template_text():
    analysis = compiled(parse_definition(VALID, "triage.yaml", default_key="triage"))
    assert analysis.system_prompt("") == "Read the ticket and triage it."
    hostile = "{{ 7 * 7 }} {% for x in range(3) %}x{% endfor %}"
    rendered = analysis.system_prompt(hostile)
    assert rendered.endswith("Also: " + hostile) and "49" not in rendered


def test_the_sandbox_refuses_a_template_that_reaches_for_python_internals():
    text = VALID.replace("Read the ticket", "{{ custom_instructions.__class__.__mro__ }}")
    with pytest.raises(DefinitionInvalid, match="t.yaml:3: prompt: template error when rendered: SecurityError"):
        parse_definition(text, "t.yaml", default_key="t")


@pytest.mark.parametrize(
    ("edit", "line", "message"),
    [
        (("  additionalProperties: false\nexamples", "examples"), 5, "additionalProperties: false"),
        (("  required: [category, urgent, product, tags, score]", "  required: [category, urgent]"), 13, "not required: product, score, tags"),
        (("    score: {type: number", "    score: {$ref: '#/x', type: number"), 12, "'$ref' is not in the strict subset"),
        (("product: {type: [string, \"null\"]}", "product: {type: strng}"), 10, "type must be one of"),
        (("description: Triage", "colour: red\ndescription: Triage"), 1, "unknown key 'colour'"),
        (("{% endif %}", "{% endfi %}"), 4, "prompt: template error"),
        (("Read the ticket", "Read {{ secret_env }} the ticket"), 3, "a prompt is given only custom_instructions"),
        (("urgent: false, product", "urgent: maybe, product"), 17, "examples[0].result does not match the schema: urgent"),
        (("counts: [category, urgent]", "counts: [category, colour]"), 19, "no field 'colour'"),
        (("numbers: [score]", "numbers: [category]"), 21, "'category' is string, not number or integer"),
        (("flagged: {field: urgent, equals: true}", "flagged: {field: urgent}"), 22, "either equals"),
    ],
)  # fmt: skip
def test_each_problem_is_named_with_its_line(edit, line, message):
    old, new = edit
    assert old in VALID
    found = problems_of(VALID.replace(old, new))
    assert any(message in text for _, text in found), found
    assert line in [found_line for found_line, text in found if message in text], found


def test_bad_yaml_names_its_line_and_every_problem_is_reported_at_once():
    assert problems_of("description: x\nprompt: [unclosed\nschema: {}\n")[0][0] in (2, 3, 4)
    found = problems_of(VALID.replace("colour", "").replace("description: Triage a ticket.", "colour: red")
                        .replace("{% endif %}", "{% endfi %}"))  # fmt: skip
    messages = " | ".join(text for _, text in found)
    assert "unknown key 'colour'" in messages and "description is missing" in messages


def test_the_root_must_be_an_object_and_a_key_must_be_a_plain_name():
    assert (
        "root must be an object"
        in problems_of(VALID.replace("  type: object\n  properties:", "  type: array\n  properties:", 1))[0][1]
    )
    found = problems_of("key: Bad Key!\n" + VALID)
    assert any("lowercase letters" in text and line == 1 for line, text in found)


def test_the_digest_covers_what_shapes_a_result_and_nothing_else():
    base = parse_definition(VALID, "a.yaml", default_key="triage").digest
    assert parse_definition(VALID, "elsewhere/b.yaml", default_key="triage").digest == base  # where it lies
    reshaped = [
        VALID.replace("Read the ticket", "Read the whole ticket"),
        VALID.replace("minimum: 0, maximum: 1", "minimum: 0, maximum: 2"),
        VALID.replace("The invoice is wrong.", "The invoice is very wrong."),
    ]
    assert all(parse_definition(t, "a.yaml", default_key="triage").digest != base for t in reshaped)
    unshaped = [
        VALID.replace("Triage a ticket.", "Triage a support ticket."),
        VALID.replace("lengths: [tags]", "lengths: []"),
    ]
    assert all(parse_definition(t, "a.yaml", default_key="triage").digest == base for t in unshaped)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_each_shipped_example_loads(path):
    definition = read_definition(path)
    assert definition.key == path.stem and definition.description
    analysis = compiled(definition)
    assert analysis.system_prompt("Be brief.").endswith("Be brief.")
    for example in definition.examples:
        analysis.result_schema.model_validate(example.result)


def test_a_file_that_is_not_a_mapping_or_not_utf8_is_refused(tmp_path):
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(DefinitionInvalid, match="list.yaml:1: a definition is a mapping"):
        read_definition(listed)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("description: caf\xe9\n".encode("latin-1"))
    with pytest.raises(DefinitionInvalid, match="latin.yaml:1: not UTF-8 text"):
        read_definition(latin)


def schema_with(field: dict, name: str = "s") -> str:
    schema = {"type": "object", "properties": {name: field}, "required": [name], "additionalProperties": False}
    return f"description: d\nprompt: p\nschema: {json.dumps(schema)}\n"


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ({"type": "string", "pattern": "^(?=a)a$"}, "lookarounds"),
        ({"type": "string", "pattern": "[A-Z]{3}"}, "written ^...$"),
        ({"type": "integer", "minimum": "abc"}, "minimum must be a finite number"),
        ({"type": "number", "multipleOf": 0}, "multipleOf must be more than 0"),
        ({"type": "array", "items": {"type": "string"}, "minItems": -1}, "minItems must be a whole number"),
        ({"type": "string", "format": ["date"]}, "format must be one of"),
        ({"type": "string", "maxLength": 10}, "'maxLength' is not in the strict subset"),
        ({"type": "string", "enum": ["a", 1]}, "enum values must be of type string"),
    ],
)
def test_a_schema_no_mode_could_enforce_is_refused_not_crashed_on(field, message):
    assert any(message in text for _, text in problems_of(schema_with(field))), problems_of(schema_with(field))


@pytest.mark.parametrize("name", ["_id", "model_dump", "a b"])
def test_a_field_name_pydantic_or_a_spreadsheet_could_not_hold_is_refused(name):
    assert any("field name" in text for _, text in problems_of(schema_with({"type": "string"}, name)))


def test_every_documented_format_loads_and_validates():
    samples = {"date": "2024-02-29", "date-time": "2024-02-29T10:00:00Z", "time": "10:00:00", "uuid": str(uuid.uuid4()),
               "email": "a@example.com", "hostname": "example.com", "ipv4": "192.0.2.1", "ipv6": "2001:db8::1",
               "duration": "P1DT2H"}  # fmt: skip
    for name, value in samples.items():
        definition = parse_definition(schema_with({"type": "string", "format": name}), "f.yaml", default_key="f")
        compiled(definition).result_schema.model_validate({"s": value})


def test_unquoted_dates_and_yes_no_stay_text_as_json_schema_means_them():
    text = VALID.replace("product: null", "product: 2024-01-01").replace(
        "category: {type: string, enum: [billing, bug]}", "category: {type: string, enum: [billing, bug, yes]}"
    )
    definition = parse_definition(text, "t.yaml", default_key="t")
    assert definition.examples[0].result["product"] == "2024-01-01"
    assert definition.output_schema["properties"]["category"]["enum"] == ["billing", "bug", "yes"]


def test_a_template_that_fails_only_when_rendered_is_refused_at_load():
    for prompt, message in [("{{ 1/0 }}", "ZeroDivisionError"), ("{% include 'x' %}", "no loader"),
                            ("{{ custom_instructions.missing }}", "has no attribute 'missing'")]:  # fmt: skip
        found = problems_of(VALID.replace("Read the ticket and triage it.", prompt))
        assert any("template error when rendered" in text and message in text for _, text in found), found


def test_reordering_the_schema_s_properties_changes_the_digest():
    reordered = VALID.replace(
        "    category: {type: string, enum: [billing, bug]}\n    urgent: {type: boolean}\n",
        "    urgent: {type: boolean}\n    category: {type: string, enum: [billing, bug]}\n",
    )
    assert reordered != VALID
    assert parse_definition(reordered, "t.yaml", "t").digest != parse_definition(VALID, "t.yaml", "t").digest


def test_a_pinned_definition_is_compiled_with_its_own_summary_not_another_of_the_same_digest():
    first = parse_definition(VALID, "t.yaml", "triage")
    second = parse_definition(VALID.replace("lengths: [tags]", "lengths: []"), "t.yaml", "triage")
    assert first.digest == second.digest
    assert compiled(first).definition.summary.lengths == ["tags"] and compiled(second).definition.summary.lengths == []
