"""A deployment's own analysis takes every path a built-in takes: the provider's Batch API, and the
estimate before a run (without an offline analyser to guess the answer's length from)."""

import asyncio
from pathlib import Path

from batch_pipeline.analysis.registry import load_catalogue
from batch_pipeline.batch.batch_api_runner import BatchApiRun
from batch_pipeline.batch.estimate import estimate_batch
from batch_pipeline.batch.partitions import Partition
from batch_pipeline.batch.registration import read_batch
from batch_pipeline.batch.request import BatchRequest
from batch_pipeline.context import ProcessingContext
from batch_pipeline.launch import sequence
from batch_pipeline.llm.batch_api import BatchApi
from batch_pipeline.llm.provider import LlmProvider
from batch_pipeline.llm.response_format import ResponseFormatMode
from batch_pipeline.outcome import LlmApi
from batch_pipeline_tests.batch.provider_batch_runs import settings_for
from batch_pipeline_tests.conftest import register_texts
from testbed.fake_openai_server import FakeOpenAIServer

CATALOGUE = load_catalogue([Path(__file__).parents[2] / "examples" / "analyses"])
INVOICES = [f"Invoice INV-{i} from Fabrikam GmbH, 2024-11-{i + 10}. Total EUR {i}00.00" for i in range(6)]


def test_a_file_analysis_goes_through_the_batch_api_and_its_answers_fit_its_schema(store):
    context = ProcessingContext(model_key="invoice_fields", ai_model="gpt-test").pinned(CATALOGUE)
    ids = register_texts(store, "run-batch", context, INVOICES)
    partition = Partition(index=0, project="p", context=context, document_ids=ids,
                          response_format=ResponseFormatMode.json_schema, llm_api=LlmApi.batch)  # fmt: skip

    with FakeOpenAIServer() as server:
        provider = LlmProvider(settings_for(server.url))

        async def run():
            analyser = provider.analyser(ResponseFormatMode.json_schema, "gpt-test", lambda message: None)
            try:
                api = BatchApi(analyser.client, 3, 1)
                return await BatchApiRun(
                    store, "run-batch", partition, analyser, api, server.url, lambda message: None
                ).analyse()
            finally:
                await analyser.close()

        summary = asyncio.run(run())
        assert {r.batch_id is not None for r in server.completions()} == {True}  # every answer came by batch
    assert summary.status_counts == {"ok": 6}
    rows = store.results("run-batch")
    assert set(rows["llm_api"]) == {"batch"} and set(rows["definition_digest"]) == {context.definition.digest}
    for result in rows["result"]:
        context.model.result_schema.model_validate_json(result)


def test_the_estimate_of_a_file_analysis_counts_its_prompt_and_an_answer_of_its_schema(store, tmp_path):
    folder = tmp_path / "invoices"
    folder.mkdir()
    for i, text in enumerate(INVOICES):
        (folder / f"{i}.md").write_text(text)
    estimates = {}
    for key in ("contract_terms", "invoice_fields"):  # with few-shot examples, and without
        context = ProcessingContext(model_key=key, ai_model="gpt-4.1-mini")
        request = sequence.pin(BatchRequest(project="p", source=str(folder), context=context), CATALOGUE)
        estimates[key] = estimate_batch(store, request, read_batch(request), ResponseFormatMode.json_schema)
    for estimate in estimates.values():
        assert estimate.documents_to_send == 6 and estimate.output_tokens > 6 * 20
        assert estimate.estimated_cost_usd is not None and estimate.estimated_cost_usd > 0
    # The contract analysis sends its example with every document: more input per document.
    assert estimates["contract_terms"].input_tokens > estimates["invoice_fields"].input_tokens + 6 * 100
