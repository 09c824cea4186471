"""create_document_records: the launch sequence (batch_pipeline.launch), adapted to Dagster."""

import time

import dagster as dg

from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.batch.partitions import Partition
from batch_pipeline.batch.registration import RegisteredBatch
from batch_pipeline.defs.config import BatchConfig
from batch_pipeline.defs.process import freeze_loaded_objects
from batch_pipeline.defs.resources import DocumentStoreResource, LlmResource
from batch_pipeline.defs.tags import BUDGET_RUN_TAG, RESUMED_FROM_TAG, run_tags
from batch_pipeline.launch import sequence
from batch_pipeline.launch.sequence import NOT_SENT, REFUSED, LaunchRefused

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
    try:
        batch, partitions = _launch(context, config, document_store, llm)
    except LaunchRefused as e:
        metadata = {"estimate": dg.MetadataValue.json(e.estimate.model_dump())} if e.estimate else None
        raise dg.Failure(str(e), metadata=metadata, allow_retries=e.retryable) from e.__cause__
    yield dg.Output(batch, "batch", metadata=_batch_metadata(batch))
    for partition in partitions:
        yield dg.DynamicOutput(partition, mapping_key=f"p{partition.index:05d}", output_name="partitions")


def _launch(
    context: dg.OpExecutionContext, config: BatchConfig, document_store: DocumentStoreResource, llm: LlmResource
) -> tuple[RegisteredBatch, list[Partition]]:
    request, store = config.to_request(), document_store.store
    # First, so that a run refused below is found by the same filters (project, model) as the rest.
    context.instance.add_run_tags(context.run_id, _printable(run_tags(request.context, project=request.project)))
    budget_run = _budget_run(context)  # before anything is written: a forged tag is refused
    if context.has_partition_key and context.partition_key != request.project:
        # Materialize on the asset's page: the partition is the project its results belong to.
        raise LaunchRefused(
            REFUSED,
            f"the run materializes partition {context.partition_key!r} of analysed_documents but its config names "
            f"project {request.project!r}: set project to {context.partition_key!r}",
            retryable=False,
        )
    # A resume analyses with the definition its first run was launched with.
    launched_with = sequence.launched_definition(store, budget_run) if budget_run != context.run_id else None
    sequence.refuse_problems(request, catalogue(), launched_with)
    request = sequence.pin(request, catalogue(), launched_with)
    processing = request.pinned_context
    started = time.monotonic()
    read = sequence.read(request, store)
    if request.max_cost_usd is not None:
        cost = sequence.refuse_over_budget(request, read, store, llm.provider, llm.response_format)
        context.log.info(f"Estimate within max_cost_usd ${request.max_cost_usd}: " + cost.summary().replace("\n", "; "))
    if not processing.is_local:
        sequence.check_provider(llm.provider, processing.ai_model)
    if processing.is_local and processing.custom_instructions:
        context.log.warning(
            "custom_instructions are recorded with every result, but the offline analysers (ai_model: local) "
            "do not interpret them."
        )
    batch, partitions = sequence.register(store, context.run_id, request, read, llm.max_concurrent_requests, budget_run)
    if context.instance.is_ephemeral:
        context.log.warning(
            "DAGSTER_HOME is not set: Dagster keeps this run in a temporary instance that the UI will not show. "
            f"Its results are stored in {store.shown_url}: `batch-pipeline runs`, `batch-pipeline status "
            f"{context.run_id}` and `batch-pipeline results {context.run_id}` read them. Set DAGSTER_HOME (make dev's "
            "is .dagster_home) to see runs in the UI."
        )
    seconds = time.monotonic() - started
    settled = sequence.settle_response_format(
        store, context.run_id, request, partitions, llm.provider, llm.response_format, budget_run
    )
    if settled is not None:
        context.log.info(f"{processing.ai_model} takes response format {settled.mode.value} ({settled.how})")
        batch = batch.model_copy(update={"response_format": settled.mode})
        partitions = [p.model_copy(update={"response_format": settled.mode}) for p in partitions]
    _log_registration(context.log, batch, seconds)
    return batch, partitions


def _printable(tags: dict[str, str]) -> dict[str, str]:
    # A lone surrogate (refused by the launch checks) cannot be stored as a tag.
    return {name: value.encode("utf-8", "replace").decode() for name, value in tags.items()}


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
    raise LaunchRefused(
        NOT_SENT,
        f"the run's {BUDGET_RUN_TAG} tag names a run this run does not resume; only `batch-pipeline resume` sets it",
    )


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
        "model_key": batch.context.model_key,
        "definition_digest": batch.context.definition.digest,
        "ai_model": batch.context.ai_model,
        "response_format": batch.response_format.value if batch.response_format else "offline",
    }
