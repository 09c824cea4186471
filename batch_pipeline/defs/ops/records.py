"""create_document_records: refuse a bad launch, check the provider, register the batch, fan out."""

import time

import dagster as dg

from batch_pipeline.batch.estimate import estimate_batch, expected_response_format
from batch_pipeline.batch.partitions import Partition
from batch_pipeline.batch.registration import (
    BatchRequest,
    ReadBatch,
    RegisteredBatch,
    needs_llm,
    partition_size_for,
    read_batch,
    register_batch,
)
from batch_pipeline.context import ProcessingContext
from batch_pipeline.costs.prices import PRICES_ENV, price_for, price_table
from batch_pipeline.costs.spend import BudgetExceeded, SpendLimit
from batch_pipeline.defs.config import BatchConfig
from batch_pipeline.defs.process import freeze_loaded_objects
from batch_pipeline.defs.resources import DocumentStoreResource, LlmResource
from batch_pipeline.defs.tags import BUDGET_RUN_TAG, RESUMED_FROM_TAG, run_tags
from batch_pipeline.documents.sources import SourceError
from batch_pipeline.llm.provider import LlmUnavailable
from batch_pipeline.llm.response_format import ResponseFormatMode
from batch_pipeline.settings import NotAllowed
from batch_pipeline.store import DocumentStore
from batch_pipeline.store.remembered import remember_response_format, remembered_response_format

REFUSED = "Refused before writing anything: "
NOT_SENT = "Refused before sending any document: "
SKIPPED_SHOWN = 200


@dg.op(
    out={
        "batch": dg.Out(RegisteredBatch, description="The registered batch: counts and the context."),
        "partitions": dg.DynamicOut(Partition, description="Document ids to analyse, one output per partition."),
    },
    tags={"kind": "ingest"},
)
def create_document_records(
    context: dg.OpExecutionContext, config: BatchConfig, document_store: DocumentStoreResource, llm: LlmResource
):
    """Read the batch, register one record per distinct document and split the analysable ones into partitions."""
    freeze_loaded_objects()
    request = config.to_request()
    if problems := request.problems():
        listed = "".join(f"\n- {problem}" for problem in problems)
        raise dg.Failure(f"{REFUSED}{len(problems)} problem(s) in the run config:{listed}", allow_retries=False)
    processing = request.context
    started = time.monotonic()
    read = _read(request, document_store.store)
    if request.max_cost_usd is not None:
        _refuse_over_budget(context.log, document_store.store, llm, request, read)
    if not processing.is_local:
        try:
            llm.provider().check_serves(processing.ai_model)
        except (LlmUnavailable, NotAllowed) as e:
            raise dg.Failure(NOT_SENT + str(e)) from e
    context.instance.add_run_tags(context.run_id, run_tags(processing))
    if processing.is_local and processing.custom_instructions:
        context.log.warning(
            "custom_instructions are recorded with every result, but the offline analysers (ai_model: local) "
            "do not interpret them."
        )
    budget_run = _budget_run(context)  # before anything is written: a forged tag is refused
    batch, partitions = _register(document_store.store, context.run_id, request, read, llm.max_concurrent_requests)
    partitions = [p.model_copy(update={"budget_run_id": budget_run}) for p in partitions]
    seconds = time.monotonic() - started
    if not processing.is_local and needs_llm(document_store.store, context.run_id, partitions):
        batch, partitions = _settle_response_format(
            context, document_store.store, llm, processing, batch, partitions, request.max_cost_usd, budget_run
        )
    _log_registration(context.log, batch, seconds)
    yield dg.Output(batch, "batch", metadata=_batch_metadata(batch))
    for partition in partitions:
        yield dg.DynamicOutput(partition, mapping_key=f"p{partition.index:05d}", output_name="partitions")


def _read(request: BatchRequest, store: DocumentStore) -> ReadBatch:
    try:
        return read_batch(request, store.stored_conversions)
    except SourceError as e:
        raise dg.Failure(REFUSED + str(e)) from e


def _refuse_over_budget(
    log: dg.DagsterLogManager, store: DocumentStore, llm: LlmResource, request: BatchRequest, read: ReadBatch
) -> None:
    """max_cost_usd at launch: a batch whose estimate is over it is refused before any request."""
    if price_for(request.context.ai_model, price_table()) is None:
        raise dg.Failure(
            f"{NOT_SENT}max_cost_usd needs a price for {request.context.ai_model!r}, and the price table has none: "
            f"add it to the file ${PRICES_ENV} names"
        )
    endpoint = llm.provider().settings.base_url
    mode = expected_response_format(store, endpoint, request.context.ai_model, llm.response_format)
    estimate = estimate_batch(store, request, read, mode)
    if estimate.estimated_cost_usd is not None and estimate.estimated_cost_usd > request.max_cost_usd:
        raise dg.Failure(
            f"{NOT_SENT}the estimate for its {estimate.documents_to_send} documents to send is "
            f"${estimate.estimated_cost_usd:.4f} ({estimate.llm_api}), over max_cost_usd ${request.max_cost_usd}",
            metadata={"estimate": dg.MetadataValue.json(estimate.model_dump())},
        )
    log.info(f"Estimate within max_cost_usd ${request.max_cost_usd}: " + estimate.summary().replace("\n", "; "))


def _register(
    store: DocumentStore, run_id: str, request: BatchRequest, read: ReadBatch, max_concurrent_requests: int
) -> tuple[RegisteredBatch, list[Partition]]:
    return register_batch(store, run_id, request, partition_size_for(request, max_concurrent_requests), read)


def _settle_response_format(
    context: dg.OpExecutionContext,
    store: DocumentStore,
    llm: LlmResource,
    processing: ProcessingContext,
    batch: RegisteredBatch,
    partitions: list[Partition],
    max_cost_usd: float | None,
    budget_run: str,
) -> tuple[RegisteredBatch, list[Partition]]:
    """The response format every partition uses: as remembered for this endpoint and model, else
    probed once, before the fan-out, and remembered."""
    try:
        provider = llm.provider()
        endpoint = provider.settings.base_url
        if llm.response_format is not ResponseFormatMode.auto:
            mode, how = llm.response_format, "configured"
        elif remembered := remembered_response_format(store, endpoint, processing.ai_model):
            mode, how = ResponseFormatMode(remembered), "as an earlier run found"
        else:
            model, ai_model = processing.model, processing.ai_model
            # Each probe attempt (max_tokens=1) is billed too: under max_cost_usd each one is reserved.
            spend = _probe_spend(store, budget_run, ai_model, max_cost_usd) if max_cost_usd is not None else None
            mode = provider.settle_response_format(model, ai_model, processing.custom_instructions, spend)
            how = "probed"
            remember_response_format(store, endpoint, ai_model, mode.value)
    except (LlmUnavailable, NotAllowed) as e:
        raise dg.Failure(NOT_SENT + str(e)) from e
    except BudgetExceeded as e:
        raise dg.Failure(f"{NOT_SENT}probing the response format {e}") from None
    context.log.info(f"{processing.ai_model} takes response format {mode.value} ({how})")
    batch = batch.model_copy(update={"response_format": mode})
    return batch, [p.model_copy(update={"response_format": mode}) for p in partitions]


def _budget_run(context: dg.OpExecutionContext) -> str:
    """The run whose max_cost_usd budget this run draws on: its own, or (resumed) the first run's.
    Tags are the launcher's to set: the budget tag is honoured only when the chain of resumed runs
    leads back to that run with this run's own config, as `batch-pipeline resume` leaves it."""
    claimed = context.run.tags.get(BUDGET_RUN_TAG)
    if claimed is None or claimed == context.run_id:
        return context.run_id
    run = context.run
    while (parent_id := run.tags.get(RESUMED_FROM_TAG)) and (parent := context.instance.get_run_by_id(parent_id)):
        if parent.run_config != context.run.run_config:
            break
        if parent.run_id == claimed:
            return claimed
        run = parent
    raise dg.Failure(
        f"{NOT_SENT}the run's {BUDGET_RUN_TAG} tag names a run this run does not resume; "
        "only `batch-pipeline resume` sets it"
    )


def _probe_spend(store: DocumentStore, budget_run: str, ai_model: str, max_cost_usd: float) -> SpendLimit:
    return SpendLimit(store, budget_run, max_cost_usd, price_for(ai_model, price_table()), max_output_tokens=1)


def _log_registration(log: dg.DagsterLogManager, batch: RegisteredBatch, seconds: float) -> None:
    failed = sum(batch.input_failures.values())
    log.info(
        f"Read, converted ({batch.converted_files} files) and registered {batch.documents} documents of project "
        f"{batch.project!r} in {seconds:.2f}s "
        f"({batch.documents / max(seconds, 1e-9):.0f} docs/s): {batch.analysable} to analyse in "
        f"{batch.partitions} partitions, {failed} unusable {batch.input_failures or ''}"
    )
    if batch.duplicate_files:
        log.info(f"{len(batch.duplicate_files)} files repeat another file's content: {batch.duplicate_files[:20]}")
    if batch.ignored_files:
        log.warning(
            f"Ignored {len(batch.ignored_files)} files of formats that are not read: {batch.ignored_files[:20]}"
        )
    if batch.skipped_entries:
        log.warning(f"Skipped {len(batch.skipped_entries)} entries of the source: {batch.skipped_entries[:50]}")


def _batch_metadata(batch: RegisteredBatch) -> dict:
    return {
        "documents": batch.documents,
        "analysable": batch.analysable,
        "converted_files": batch.converted_files,
        "input_failures": sum(batch.input_failures.values()),
        # Bounded: a source can hold any number of FIFOs or broken links, the event log should not.
        "skipped_entries": dg.MetadataValue.json(batch.skipped_entries[:SKIPPED_SHOWN]),
        "skipped_entry_count": len(batch.skipped_entries),
        "ignored_files": dg.MetadataValue.json(batch.ignored_files[:SKIPPED_SHOWN]),  # of formats not read
        "ignored_file_count": len(batch.ignored_files),
        "partitions": batch.partitions,
        "model_key": batch.context.model_key.value,
        "ai_model": batch.context.ai_model,
        "response_format": batch.response_format.value if batch.response_format else "offline",
    }
