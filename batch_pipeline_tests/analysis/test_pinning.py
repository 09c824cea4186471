"""A run analyses with the definition it was launched with, carried by its partitions: a process
whose files say otherwise (edited since, or never there: a worker on another host) still sends the
launch's prompt and schema."""

import asyncio

from batch_pipeline.analysis.definition import parse_definition
from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.context import PinnedContext, ProcessingContext
from batch_pipeline.llm.options import LlmSettings
from batch_pipeline.llm.provider import LlmProvider
from batch_pipeline.llm.response_format import ResponseFormatMode
from batch_pipeline_tests.analysis.sample_definition import VALID
from testbed.fake_openai_server import FakeOpenAIServer


def settings_for(base_url: str) -> LlmSettings:
    return LlmSettings(
        api_key="sk-test-key", base_url=base_url, rate_limit_url=None, timeout_seconds=30, max_concurrent_requests=4,
        requests_per_minute=None, tokens_per_minute=None, max_attempts=2, rate_limit_wait_seconds=10,
        retry_max_wait_seconds=1, max_output_tokens=1024, max_repairs=1, response_format=ResponseFormatMode.json_schema,
        batch_poll_max_seconds=1, batch_resubmissions=1,
    )  # fmt: skip


def test_a_pinned_definition_this_process_has_no_file_for_is_what_is_sent():
    definition = parse_definition(
        VALID.replace("Read the ticket", "Read the launch-time ticket"), "gone.yaml", "triage"
    )
    assert "triage" not in catalogue().analyses
    context = PinnedContext(model_key="triage", ai_model="gpt-test", definition=definition)
    context = PinnedContext.model_validate_json(context.model_dump_json())  # as a step receives it

    async def analyse(url: str):
        analyser = LlmProvider(settings_for(url)).analyser(ResponseFormatMode.json_schema, "gpt-test", lambda m: None)
        try:
            return await analyser.analyse("The invoice is wrong again.", context)
        finally:
            await analyser.close()

    with FakeOpenAIServer() as server:
        outcome = asyncio.run(analyse(server.url))
    assert outcome.status == "ok", outcome.error
    [call] = server.completions()
    assert call.system.startswith("Read the launch-time ticket and triage it.")
    assert call.response_format == "json_schema"
    answer = context.model.result_schema.model_validate_json(outcome.result)
    assert answer.category in ("billing", "bug")  # the loopback server answered the schema it was sent


def test_an_offline_analyser_serves_only_the_definition_it_was_installed_with():
    installed = ProcessingContext(model_key="content_compliance", ai_model="local").pinned(catalogue())
    assert installed.model.offline is not None
    edited = installed.definition.model_copy(update={"prompt": installed.definition.prompt + " Also IPs."})
    edited = type(installed.definition).model_validate(edited.model_dump(by_alias=True))
    assert edited.digest != installed.definition.digest
    assert PinnedContext(**installed.unpinned().model_dump(), definition=edited).model.offline is None
