"""A partition's run through the Batch API runner without Dagster, against the loopback Batch API:
what the runner tests and the fault tests share."""

import asyncio

import openai

from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.batch.batch_api_runner import BatchApiRun
from batch_pipeline.batch.partitions import Partition
from batch_pipeline.context import ProcessingContext
from batch_pipeline.llm.batch_api import KEY_FIELD, BatchApi
from batch_pipeline.llm.batch_lines import request_line
from batch_pipeline.llm.completions import completion_request, sent_body
from batch_pipeline.llm.options import LlmSettings
from batch_pipeline.llm.prompts import build_messages
from batch_pipeline.llm.provider import LlmProvider
from batch_pipeline.llm.response_format import ResponseFormatMode
from batch_pipeline.outcome import LlmApi
from batch_pipeline_tests.conftest import register_memos

CONTEXT = ProcessingContext(model_key="content_compliance", ai_model="gpt-test").pinned(catalogue())
KEY = "sk-test-key"


def settings_for(url: str) -> LlmSettings:
    return LlmSettings(
        api_key=KEY, base_url=url, timeout_seconds=10, max_concurrent_requests=8, requests_per_minute=None,
        tokens_per_minute=None, max_attempts=3, rate_limit_wait_seconds=60, retry_max_wait_seconds=1,
        max_output_tokens=512, max_repairs=1, response_format=ResponseFormatMode.json_schema,
        batch_poll_max_seconds=0.2, batch_resubmissions=1,
    )  # fmt: skip


def body_for(text: str) -> dict:
    messages = build_messages(CONTEXT.model, "", text, ResponseFormatMode.json_schema)
    return sent_body(completion_request(CONTEXT.model, "gpt-test", messages, ResponseFormatMode.json_schema, 512))


def register(store, run_id: str, count: int) -> list[str]:
    return register_memos(store, run_id, CONTEXT, count)


def finish(store, server, run_id: str, ids: list[str], spend=None) -> tuple[dict[str, int], list[str]]:
    """A new run's partition through the Batch API, as the analysis step runs it."""
    partition = Partition(index=0, project="p", context=CONTEXT, document_ids=ids,
                          response_format=ResponseFormatMode.json_schema, llm_api=LlmApi.batch)  # fmt: skip
    provider, logged = LlmProvider(settings_for(server.url)), []

    async def run():
        analyser = provider.analyser(ResponseFormatMode.json_schema, "gpt-test", logged.append, spend)
        api = BatchApi(analyser.client, 3, 1)
        try:
            return await BatchApiRun(store, run_id, partition, analyser, api, server.url, logged.append).analyse()
        finally:
            await analyser.close()

    return asyncio.run(run()).status_counts, logged


def create_at_provider(server, store, key: str, ids: list[str]) -> str:
    """What the run that recorded the batch did (or does) next: upload its file and create it."""
    client = openai.OpenAI(api_key=KEY, base_url=server.url)
    texts = store.document_texts(ids)
    lines = [request_line(d, body_for(texts[d])) for d in ids]
    upload = client.files.create(file=("in.jsonl", b"".join(lines)), purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={KEY_FIELD: key})  # fmt: skip
    return batch.id
