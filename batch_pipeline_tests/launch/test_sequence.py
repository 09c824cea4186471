"""The launch sequence without Dagster: a bad launch is refused with every problem named at once,
before anything is written (the job test in test_job.py shows the op refuses the same way)."""

from pathlib import Path

import pytest

from batch_pipeline.analysis.registry import catalogue, load_catalogue
from batch_pipeline.batch.request import BatchRequest
from batch_pipeline.launch import sequence
from batch_pipeline.launch.sequence import REFUSED, LaunchRefused
from batch_pipeline_tests.conftest import EXAMPLE_DOCS, batch_config


def request_of(source: str | None = None, **options) -> BatchRequest:
    return BatchRequest.model_validate(batch_config(source, **options)["ops"]["create_document_records"]["config"])


def launched(request: BatchRequest, store) -> None:
    """What the op runs before it writes anything."""
    sequence.refuse_problems(request, catalogue())
    sequence.read(request, store)


@pytest.mark.parametrize(
    "source, options, message",
    [
        ("{tmp}/no-such-folder", {}, "does not exist"),
        ("{tmp}", {}, "holds no documents"),
        (str(EXAMPLE_DOCS), {"documents": [{"filename": "a.md", "markdown_content": "# A"}]}, "not both"),
        (str(EXAMPLE_DOCS), {"partition_size": 0}, "partition_size must be at least 1"),
        (str(EXAMPLE_DOCS), {"ai_model": " "}, "ai_model must not be empty"),
    ],
)
def test_a_bad_batch_is_refused_before_anything_is_written(store, tmp_path, source, options, message):
    empty_folder = tmp_path / "empty_folder"
    empty_folder.mkdir()
    with pytest.raises(LaunchRefused, match=message) as refused:
        launched(request_of(source.format(tmp=empty_folder), **options), store)
    assert str(refused.value).startswith(REFUSED)
    assert store.count_documents() == 0


def test_every_launch_problem_is_named_at_once(store, tmp_path):
    """What "Scaffold missing config" leaves (empty strings) plus a missing source and bad numbers:
    one refusal names them all, and says it may not be retried as it is."""
    request = request_of(project="", ai_model="", partition_size=0, max_pages=0, conversion_timeout_seconds=-1)
    with pytest.raises(LaunchRefused) as refused:
        launched(request, store)
    for problem in [
        "project must not be empty",
        "context.ai_model must not be empty",
        "partition_size must be at least 1, got 0",
        "max_pages must be at least 1, got 0",
        "conversion_timeout_seconds must be more than 0, got -1",
        "No documents: set `source`",
    ]:
        assert problem in str(refused.value)
    assert not refused.value.retryable
    with pytest.raises(LaunchRefused) as missing:
        launched(request_of(str(tmp_path / "nowhere"), ai_model=""), store)
    assert "does not exist" in str(missing.value) and "ai_model must not be empty" in str(missing.value)
    assert store.count_documents() == 0


EXAMPLES = Path(__file__).parents[2] / "examples" / "analyses"


def test_an_unknown_or_broken_analysis_is_refused_with_the_rest(store, tmp_path):
    (tmp_path / "broken.yaml").write_text("description: x\nprompt: '{{ oops'\nschema: {type: object}\n")
    loaded = load_catalogue([tmp_path])
    for key, message in [("nope", "unknown model_key 'nope'; valid keys: content_compliance, document_metadata"),
                         ("broken", str(tmp_path / "broken.yaml") + ":2: prompt: template error")]:  # fmt: skip
        request = request_of(str(EXAMPLE_DOCS), model_key=key, partition_size=0)
        with pytest.raises(LaunchRefused) as refused:
            sequence.refuse_problems(request, loaded)
        assert message in str(refused.value) and "partition_size must be at least 1" in str(refused.value)
    assert store.count_documents() == 0


def test_local_is_refused_for_an_analysis_without_an_offline_analyser_naming_those_with_one():
    loaded = load_catalogue([EXAMPLES])
    request = request_of(str(EXAMPLE_DOCS), model_key="contract_terms", ai_model="local")
    with pytest.raises(LaunchRefused, match="'contract_terms' has none \\(analyses with one: content_compliance, "
                                            "document_metadata\\)"):  # fmt: skip
        sequence.refuse_problems(request, loaded)
    sequence.refuse_problems(request_of(str(EXAMPLE_DOCS), model_key="contract_terms", ai_model="gpt-x"), loaded)


def test_the_launch_pins_the_definition_it_found(tmp_path):
    loaded = load_catalogue([EXAMPLES])
    pinned = sequence.pin(request_of(str(EXAMPLE_DOCS), model_key="contract_terms", ai_model="gpt-x"), loaded)
    assert pinned.pinned_context.definition == loaded.get("contract_terms").definition
    with pytest.raises(TypeError, match="not pinned"):
        _ = request_of(str(EXAMPLE_DOCS)).pinned_context


def test_a_resume_pins_the_definition_its_first_run_was_launched_with(store, tmp_path):
    """The file was edited (or removed) since the first run: the resume still analyses with the
    definition the first run was launched with, as the store kept it."""
    from batch_pipeline.context import ProcessingContext
    from batch_pipeline_tests.conftest import register_texts

    loaded = load_catalogue([EXAMPLES])
    first = ProcessingContext(model_key="contract_terms", ai_model="gpt-x").pinned(loaded)
    register_texts(store, "first-run", first, ["a contract"])
    kept = sequence.launched_definition(store, "first-run")
    assert kept.digest == first.definition.digest and kept.summary == first.definition.summary
    assert sequence.launched_definition(store, "no-such-run") is None

    without_the_file = load_catalogue([])  # the deployment no longer has contract_terms.yaml
    request = request_of(str(EXAMPLE_DOCS), model_key="contract_terms", ai_model="gpt-x")
    assert sequence.analysis_problems(request, without_the_file) != []
    sequence.refuse_problems(request, without_the_file, kept)
    assert sequence.pin(request, without_the_file, kept).pinned_context.definition == kept
