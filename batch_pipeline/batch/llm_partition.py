"""One partition through the LLM, online or through the Batch API: the analyser set up for the
run (its max_cost_usd, the rate limits remembered for the provider), and what the provider taught
it kept for the next runs (limits learned; a response format it stopped taking, forgotten)."""

import asyncio
from collections.abc import Callable

from batch_pipeline.batch.batch_api_runner import BatchApiRun
from batch_pipeline.batch.partition_analysis import PartitionResult
from batch_pipeline.batch.partitions import Partition
from batch_pipeline.batch.runner import analyse_documents
from batch_pipeline.costs.prices import price_for, price_table
from batch_pipeline.costs.spend import SpendLimit
from batch_pipeline.llm.batch_api import BatchApi
from batch_pipeline.llm.provider import LlmProvider
from batch_pipeline.outcome import LlmApi
from batch_pipeline.rate_limits.limits import ProviderLimits
from batch_pipeline.store import DocumentStore
from batch_pipeline.store.remembered import forget_response_format, remember_limits, remembered_limits


async def analyse_partition_with_llm(
    store: DocumentStore,
    run_id: str,
    partition: Partition,
    provider: LlmProvider,
    log: Callable[[str], None],
    stopping: asyncio.Event | None = None,
) -> PartitionResult:
    """Once stopping is set, nothing more is sent; answers to the requests in flight get the llm
    resource's stop_grace_seconds. (A Batch API partition does not drain: the op cancels it, and its
    batch goes on at the provider for resume to collect.)"""
    assert partition.response_format is not None, "settled before the fan-out"
    ai_model = partition.context.ai_model
    spend = None
    if partition.max_cost_usd is not None:
        price = price_for(ai_model, price_table())  # the launch refused a model without a price
        budget_run = partition.budget_run_id or run_id
        spend = SpendLimit(store, budget_run, partition.max_cost_usd, price, provider.settings.max_output_tokens)
    fingerprint = provider.fingerprint(ai_model)
    remembered = remembered_limits(store, fingerprint)
    recalled = ProviderLimits.from_stored(remembered) if remembered else None
    analyser = provider.analyser(partition.response_format, ai_model, log, spend, recalled, stopping)
    try:
        if partition.llm_api is LlmApi.batch:
            settings = provider.settings
            api = BatchApi(analyser.client, settings.max_attempts, settings.retry_max_wait_seconds)
            endpoint = settings.base_url or str(analyser.client.base_url)
            summary = await BatchApiRun(store, run_id, partition, analyser, api, endpoint, log).analyse()
        else:
            grace = provider.settings.stop_grace_seconds
            summary = await analyse_documents(store, run_id, partition, analyser, log, stopping, grace)
        if learned := (await analyser.pacer.learned_limits()).to_stored():
            remember_limits(store, fingerprint, learned)
    finally:
        await analyser.close()
    if analyser.format_rejected:
        forget_response_format(store, provider.settings.base_url, ai_model)
    pacer = analyser.pacer
    return PartitionResult(summary, pacer.limits(), pacer.pauses, analyser.format_rejected, pacer.failure)
