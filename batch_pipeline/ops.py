"""The job's ops: each takes config and resources, calls plain functions, logs and emits metadata."""

import time

import dagster as dg

from batch_pipeline import settings
from batch_pipeline.analysis import NothingToSend, OfflineAnalyser, Partition, PartitionSummary, analyze_documents
from batch_pipeline.batch import (
    BatchConfig,
    FailurePolicy,
    RegisteredBatch,
    SourceError,
    needs_llm,
    partition_size_for,
    register_batch,
)
from batch_pipeline.llm import LlmUnavailable
from batch_pipeline.report import build_report, write_report
from batch_pipeline.resources import DocumentStoreResource, LlmResource

ANALYSIS_RETRY_POLICY = dg.RetryPolicy(
    max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def analysed_batch_asset_key(project: str) -> dg.AssetKey:
    return dg.AssetKey(["batch_pipeline", "analysed_documents", project])


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
    if problems := config.problems():
        raise dg.Failure("Refused before writing anything: " + "; ".join(problems))
    processing = config.context
    response_format = None
    if not processing.is_local:
        try:
            llm.check_serves(processing.ai_model)
        except LlmUnavailable as e:
            raise dg.Failure(f"Refused before sending any document: {e}") from None
    context.instance.add_run_tags(context.run_id, processing.run_tags())
    if processing.is_local and processing.custom_instructions:
        context.log.warning(
            "custom_instructions are recorded with every result, but the offline analysers (ai_model: local) "
            "do not interpret them."
        )

    started = time.monotonic()
    try:
        size = partition_size_for(config, llm.max_concurrent_requests)
        batch, partitions = register_batch(document_store.store, context.run_id, config, size)
    except SourceError as e:
        raise dg.Failure(f"Refused before writing anything: {e}") from e
    seconds = time.monotonic() - started
    if not processing.is_local and needs_llm(document_store.store, context.run_id, partitions):
        try:
            args = (processing.model, processing.ai_model, processing.custom_instructions)
            response_format = llm.settle_response_format(*args)
        except LlmUnavailable as e:
            raise dg.Failure(f"Refused before sending any document: {e}") from None
        context.log.info(f"{processing.ai_model} takes response format {response_format.value}")
        batch = batch.model_copy(update={"response_format": response_format})
        partitions = [p.model_copy(update={"response_format": response_format}) for p in partitions]

    failed = sum(batch.input_failures.values())
    context.log.info(
        f"Registered {batch.documents} documents of project {batch.project!r} in {seconds:.2f}s "
        f"({batch.documents / max(seconds, 1e-9):.0f} docs/s): {batch.analysable} to analyse in "
        f"{batch.partitions} partitions, {failed} unusable {batch.input_failures or ''}"
    )
    if batch.duplicate_files:
        context.log.info(f"{len(batch.duplicate_files)} files repeat another file's content: {batch.duplicate_files[:20]}")
    if batch.ignored_files:
        context.log.warning(f"Ignored {len(batch.ignored_files)} files that are not .md/.markdown/.txt: {batch.ignored_files[:20]}")
    yield dg.Output(
        batch,
        "batch",
        metadata={
            "documents": batch.documents,
            "analysable": batch.analysable,
            "input_failures": failed,
            "partitions": batch.partitions,
            "model_key": processing.model_key.value,
            "ai_model": processing.ai_model,
            "response_format": response_format.value if response_format else "offline",
        },
    )
    for partition in partitions:
        yield dg.DynamicOutput(partition, mapping_key=f"p{partition.index:05d}", output_name="partitions")


# Pool "llm": the instance's pool limit caps how many partitions are analysed at once across runs.
@dg.op(retry_policy=ANALYSIS_RETRY_POLICY, pool="llm", tags={"kind": "analysis"})
async def analyze_partition(
    context: dg.OpExecutionContext, partition: Partition, document_store: DocumentStoreResource, llm: LlmResource
) -> PartitionSummary:
    """Analyse one partition's documents concurrently; every result is stored as soon as it is known."""
    store = document_store.store
    if partition.context.is_local:
        summary = await analyze_documents(store, context.run_id, partition, OfflineAnalyser(), context.log.info)
    elif partition.response_format is None:
        summary = await analyze_documents(store, context.run_id, partition, NothingToSend(), context.log.info)
    else:
        analyser = llm.analyser(partition.response_format)
        try:
            summary = await analyze_documents(store, context.run_id, partition, analyser, context.log.info)
        finally:
            await analyser.close()
        context.log.info(f"partition {summary.index}: {analyser.gate.pauses} rate-limit pauses")
    analysed = summary.documents - summary.cached - summary.skipped_already_done
    context.log.info(
        f"partition {summary.index}: {summary.documents} documents, {summary.cached} from cache, "
        f"{summary.skipped_already_done} already done, {analysed} analysed in {summary.seconds:.2f}s "
        f"({analysed / max(summary.seconds, 1e-9):.1f} docs/s); statuses {summary.status_counts}"
    )
    context.add_output_metadata({"documents": summary.documents, "cached": summary.cached, **summary.status_counts})
    return summary


@dg.op(tags={"kind": "report"})
def aggregate(
    context: dg.OpExecutionContext,
    batch: RegisteredBatch,
    partition_summaries: list[PartitionSummary],
    document_store: DocumentStoreResource,
) -> None:
    """Summarise the run's stored results into a report (CSV + Markdown) and record the batch's lineage."""
    rows = document_store.store.results(context.run_id)
    report = build_report(context.run_id, batch.project, batch.context.model, rows)
    csv_path, summary_path = write_report(report, rows, settings.reports_dir() / context.run_id)
    processing = batch.context
    metadata = {
        "documents": report.documents,
        "ok": report.status_counts.get("ok", 0),
        "failed": report.failed,
        "served_from_cache": report.cached,
        "status_counts": dg.MetadataValue.table(
            records=[dg.TableRecord({"status": k, "documents": v}) for k, v in report.status_counts.items()],
            schema=dg.TableSchema(columns=[dg.TableColumn("status", "string"), dg.TableColumn("documents", "int")]),
        ),
        "model_summary": dg.MetadataValue.md(report.to_markdown()),
        "report_csv": dg.MetadataValue.path(str(csv_path)),
        "report_summary": dg.MetadataValue.path(str(summary_path)),
        "model_key": processing.model_key.value,
        "ai_model": processing.ai_model,
        "custom_instructions": processing.custom_instructions,
        "input_tokens": sum(u.input_tokens for u in report.usage),
        "cached_input_tokens": sum(u.cached_input_tokens for u in report.usage),
        "output_tokens": sum(u.output_tokens for u in report.usage),
        "tokens_per_model": dg.MetadataValue.json([u.model_dump() for u in report.usage]),
        "estimated_cost_usd": report.estimated_cost_usd,
    }
    context.log_event(
        dg.AssetMaterialization(
            asset_key=analysed_batch_asset_key(batch.project),
            description=f"Documents of project {batch.project} analysed by run {context.run_id}",
            metadata={**metadata, "run_id": context.run_id, "analyser_version": processing.model.version},
        )
    )
    context.add_output_metadata(metadata)
    context.log.info(
        f"Run summary: {report.documents} documents, {metadata['ok']} ok ({report.cached} from cache), "
        f"{report.failed} failed, {report.status_counts.get('pending', 0)} pending; report in {summary_path.parent}"
    )
    if report.failed and batch.on_document_failure is FailurePolicy.fail:
        raise dg.Failure(
            f"{report.failed} of {report.documents} documents failed (on_document_failure: fail); "
            f"see {csv_path}",
            metadata={"failed": report.failed, "status_counts": dg.MetadataValue.json(report.status_counts)},
        )
