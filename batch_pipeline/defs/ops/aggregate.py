"""aggregate: the run's report from its stored rows, and the analysed batch's materialization."""

import time
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from batch_pipeline import settings
from batch_pipeline.batch.partitions import PartitionSummary
from batch_pipeline.batch.registration import RegisteredBatch
from batch_pipeline.batch.request import FailurePolicy
from batch_pipeline.context import PinnedContext
from batch_pipeline.defs.assets import analysed_documents, record_project
from batch_pipeline.defs.process import freeze_loaded_objects
from batch_pipeline.defs.resources import DocumentStoreResource
from batch_pipeline.outcome import DocumentStatus

if TYPE_CHECKING:
    from batch_pipeline.report.report import BatchReport


@dg.op(tags={"kind": "report"})
def aggregate(
    context: dg.OpExecutionContext,
    batch: RegisteredBatch,
    partition_summaries: list[PartitionSummary],
    document_store: DocumentStoreResource,
) -> None:
    """Summarise the run's stored results into a report (CSV + Markdown) and record the batch's lineage."""
    freeze_loaded_objects()
    # Imported here: pandas loads only in the process that writes the report, not at every start.
    from batch_pipeline.report.report import build_report, write_report

    rows = document_store.store.results(context.run_id)
    report = build_report(context.run_id, batch.project, batch.context.model, rows)
    folder = settings.reports_dir() / context.run_id
    csv_path, summary_path, html_path = write_report(report, rows, folder, batch.context.model)
    processing = batch.context
    metadata = _report_metadata(report, processing, csv_path, summary_path, html_path)
    record_project(context.instance, batch.project)
    context.log_event(
        dg.AssetMaterialization(
            asset_key=analysed_documents.key,
            partition=batch.project,
            description=f"Documents of project {batch.project} analysed by run {context.run_id}",
            metadata={
                **metadata,
                **_run_metrics(context, report),
                "run_id": context.run_id,
                "analyser_version": processing.analyser_version,
            },
        )
    )
    context.add_output_metadata(metadata)
    context.log.info(
        f"Run summary: {report.documents} documents, {metadata['ok']} ok ({report.cached} from cache), "
        f"{report.failed} failed, {report.status_counts.get(DocumentStatus.pending, 0)} pending; report in {summary_path.parent}"
    )
    if report.failed and batch.on_document_failure is FailurePolicy.fail:
        raise dg.Failure(
            f"{report.failed} of {report.documents} documents failed (on_document_failure: fail); see {csv_path}",
            metadata={"failed": report.failed, "status_counts": dg.MetadataValue.json(report.status_counts)},
        )


def _run_metrics(context: dg.OpExecutionContext, report: "BatchReport") -> dict:
    """Numbers the asset page plots across runs: throughput and latency of what this run analysed."""
    record = context.instance.get_run_record_by_id(context.run_id)
    started = record.start_time if record and record.start_time else None
    seconds = time.time() - started if started else None
    analysed = report.documents - report.cached
    return {
        "docs_per_second": round(analysed / seconds, 2) if seconds else None,
        "latency_p50_ms": report.latency_p50_ms,
        "latency_p95_ms": report.latency_p95_ms,
    }


def _report_metadata(
    report: "BatchReport", processing: PinnedContext, csv_path: Path, summary_path: Path, html_path: Path
) -> dict:
    return {
        "documents": report.documents,
        "ok": report.status_counts.get(DocumentStatus.ok, 0),
        "failed": report.failed,
        "served_from_cache": report.cached,
        # Found but left out of the stored results (over $BATCH_PIPELINE_MAX_FINDINGS); model_summary says which lists.
        "items_not_kept": sum(report.not_kept.values()),
        "status_counts": dg.MetadataValue.table(
            records=[dg.TableRecord({"status": k, "documents": v}) for k, v in report.status_counts.items()],
            schema=dg.TableSchema(columns=[dg.TableColumn("status", "string"), dg.TableColumn("documents", "int")]),
        ),
        "model_summary": dg.MetadataValue.md(report.to_markdown()),
        "report_csv": dg.MetadataValue.path(str(csv_path)),
        "report_summary": dg.MetadataValue.path(str(summary_path)),
        "report_html": dg.MetadataValue.path(str(html_path)),
        "model_key": processing.model_key,
        "definition_digest": processing.definition.digest,
        "flagged": report.flagged,
        "ai_model": processing.ai_model,
        "custom_instructions": processing.custom_instructions,
        "input_tokens": sum(u.input_tokens for u in report.usage),
        "cached_input_tokens": sum(u.cached_input_tokens for u in report.usage),
        "output_tokens": sum(u.output_tokens for u in report.usage),
        "tokens_per_model": dg.MetadataValue.json([u.model_dump() for u in report.usage]),
        "estimated_cost_usd": report.estimated_cost_usd,
        "batch_api_saved_usd": report.batch_api_saved_usd,
    }
