"""The Batch API runner without Dagster: a batch recorded by a run that died before hearing its id."""

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

import openai
import pytest

from batch_pipeline.batch.batch_api_runner import BatchApiRun
from batch_pipeline.batch.batch_spend import batch_budget
from batch_pipeline.batch.partitions import Partition
from batch_pipeline.context import ModelKey, ProcessingContext
from batch_pipeline.costs.prices import ModelPrice
from batch_pipeline.costs.spend import SpendLimit
from batch_pipeline.llm.batch_api import KEY_FIELD, BatchApi
from batch_pipeline.llm.batch_lines import request_line
from batch_pipeline.llm.completions import completion_request, sent_body
from batch_pipeline.llm.prompts import build_messages
from batch_pipeline.llm.provider import LlmProvider
from batch_pipeline.llm.response_format import ResponseFormatMode
from batch_pipeline.llm.settings import LlmApi, LlmSettings
from batch_pipeline.store.provider_batches import batches_of_run, record_preparing, record_submitted
from batch_pipeline.store.run_budgets import spend_of
from batch_pipeline.store.schema import provider_batches
from batch_pipeline_tests.conftest import register_memos
from batch_pipeline_tests.fake_openai_server import FakeOpenAIServer

CONTEXT = ProcessingContext(model_key=ModelKey.content_compliance, ai_model="gpt-test")
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


@pytest.mark.parametrize("owner", ["died_after_create", "died_before_create", "still_creating"])
def test_a_batch_recorded_before_its_create_is_created_exactly_once(store, owner):
    with FakeOpenAIServer() as server:
        ids = register(store, "first-run", 6)
        row = record_preparing(store, server.url, CONTEXT.cache_key(), "first-run", 0, ids, "first-run/owner").batch
        if owner == "died_after_create":
            create_at_provider(server, store, row.batch_key, ids)
        if owner == "died_before_create":  # and its lease has run out
            with store.engine.begin() as conn:
                conn.execute(provider_batches.update().values(lease_until=datetime.now(UTC) - timedelta(seconds=1)))
        if owner == "still_creating":  # the first run is alive: it creates the batch and records its id

            def first_run_goes_on() -> None:
                time.sleep(1)
                batch_id = create_at_provider(server, store, row.batch_key, ids)
                record_submitted(store, row.batch_key, batch_id, "validating")

            threading.Thread(target=first_run_goes_on).start()
        register(store, "second-run", 6)
        counts, logged = finish(store, server, "second-run", ids)
    assert counts == {"ok": 6}
    assert server.batch_creations == 1, "a batch was created twice"
    assert not [r for r in server.requests if r.batch_id is None and r.document], "a document went online"
    found = any("found at the provider" in message for message in logged)
    assert found or owner != "died_after_create"
    assert not found or owner != "died_before_create"
    if owner != "died_before_create":
        (batch,) = batches_of_run(store, "first-run")
        assert batch.state == "collected" and batch.batch_id == next(iter(server.batches))


def test_a_batch_in_flight_when_its_run_died_is_counted_once_in_the_budget_its_resume_shares(store):
    """Guarantee: a batch's worst case is reserved with its record, in the run's budget. A run that
    dies with the batch in flight leaves the reservation there (not lost, not leaked); its resume,
    drawing on the same budget, adopts the batch without reserving it again, and collecting it
    settles the reservation at what the lines cost, once. (Before, the reservation lived in the dead
    process: the budget read it reserved for good, and the resume reserved the batch a second time.)"""
    price = ModelPrice(input=100.0, output=400.0, batch_input=50.0, batch_output=200.0)
    with FakeOpenAIServer() as server:
        ids = register(store, "first-run", 4)
        first = SpendLimit(store, "first-run", 1.0, price, max_output_tokens=512)
        texts = store.document_texts(ids)
        budget = batch_budget(first, {d: body_for(texts[d]) for d in ids})
        row = record_preparing(
            store, server.url, CONTEXT.cache_key(), "first-run", 0, ids, "first-run/owner", budget=budget
        ).batch
        create_at_provider(server, store, row.batch_key, ids)
        worst = sum(budget.worst_case_usd.values())
        assert spend_of(store, "first-run")[2] == pytest.approx(worst), "the dead run's batch stays reserved"
        register(store, "second-run", 4)
        resumed = SpendLimit(store, "first-run", 1.0, price, max_output_tokens=512)  # the resume's shared budget
        counts, _ = finish(store, server, "second-run", ids, resumed)
    assert counts == {"ok": 4} and server.batch_creations == 1
    _, spent, in_flight = spend_of(store, "first-run")
    rows = store.results("second-run")
    paid = (rows["input_tokens"].sum() * 50.0 + rows["output_tokens"].sum() * 200.0) / 1e6
    assert spent == pytest.approx(paid) and 0 < spent < worst and in_flight == pytest.approx(0)
