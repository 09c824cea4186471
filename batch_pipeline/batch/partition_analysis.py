"""How one partition is analysed, decided in one place: by the offline analysers (ai_model local),
by nothing (every document was cached at launch), or through the LLM (``llm_partition``: online
or through the Batch API)."""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from batch_pipeline.batch.partitions import Partition, PartitionSummary
from batch_pipeline.batch.runner import Analyser, NothingToSend, analyse_documents
from batch_pipeline.rate_limits.limits import ProviderLimits
from batch_pipeline.store import DocumentStore

if TYPE_CHECKING:
    from batch_pipeline.llm.provider import LlmProvider


@dataclass
class PartitionResult:
    summary: PartitionSummary
    limits: ProviderLimits | None = None  # what the LLM requests were paced to (None: no LLM)
    pauses: int = 0  # rate-limit pauses
    format_rejected: bool = False  # the provider no longer takes the run's response format (forgotten)
    pace_state_failure: str | None = None  # why the pace state stopped answering, if it did


async def analyse(
    store: DocumentStore,
    run_id: str,
    partition: Partition,
    offline_analyser: Callable[[float], Analyser],
    provider: Callable[[], "LlmProvider"],
    log: Callable[[str], None],
    stopping: asyncio.Event | None = None,
) -> PartitionResult:
    """offline_analyser(analysis_timeout_seconds) and provider() are asked for only when needed."""
    if partition.context.is_local:  # nothing paid for: a stop drops the work under way at once
        analyser = offline_analyser(partition.analysis_timeout_seconds)
        return PartitionResult(await analyse_documents(store, run_id, partition, analyser, log, stopping))
    if partition.response_format is None:  # the launch found every document cached
        return PartitionResult(await analyse_documents(store, run_id, partition, NothingToSend(), log, stopping))
    # Imported here: a process that analyses offline never loads the openai SDK.
    from batch_pipeline.batch.llm_partition import analyse_partition_with_llm

    return await analyse_partition_with_llm(store, run_id, partition, provider(), log, stopping)
