"""aggregate: the run's report from its stored rows, its checks, and the analysed batch's
materialization; conclude_analysed_documents does the same as the last step of the asset."""

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from batch_pipeline import settings
from batch_pipeline.batch.partitions import PartitionSummary
from batch_pipeline.batch.registration import RegisteredBatch
from batch_pipeline.batch.request import FailurePolicy
from batch_pipeline.context import PinnedContext
from batch_pipeline.defs.assets import ANALYSED_DOCUMENTS, CHECK_OUTPUTS, record_project
from batch_pipeline.defs.process import freeze_loaded_objects
from batch_pipeline.defs.resources import DocumentStoreResource
from batch_pipeline.outcome import FAILURE_RATE_CHECK, LABELLED_SCORE_CHECK, CheckOutcome, DocumentStatus
from batch_pipeline.store.run_records import record_checks, run_record

FLAGGED_SHOWN = 20  # on the asset page; report.html and results.csv have them all

if TYPE_CHECKING:
    from batch_pipeline.report.report import BatchReport


@dataclass
class Concluded:
    """A run's stored results summarised: its report, how its checks ended, the asset metadata."""

    report: "BatchReport"
    checks: list[CheckOutcome]
    metadata: dict
    csv_path: Path


def _conclude(
    context: dg.OpExecutionContext, batch: RegisteredBatch, document_store: DocumentStoreResource
) -> Concluded:
    """The report written and the checks' outcomes stored, before anything can fail the run."""
    freeze_loaded_objects()
    # Imported here: pandas loads only in the process that writes the report, not at every start.
    from batch_pipeline.evaluation.checks import run_checks
    from batch_pipeline.report.html import flagged_documents
    from batch_pipeline.report.report import build_report, write_report

    store, processing = document_store.store, batch.context
    if run_record(store, context.run_id) is None:
        # "Re-execute from failure" of this step alone: the documents were registered under another run.
        raise dg.Failure(
            f"run {context.run_id} registered no documents (a re-execution of a step of another run?): "
            "finish a failed or dead run with `batch-pipeline resume RUN_ID`, or launch the batch again",
            allow_retries=False,
        )
    rows = store.results(context.run_id)
    report = build_report(context.run_id, batch.project, processing.model, rows)
    checks = run_checks(store, context.run_id, batch.checks, report.status_counts)
    report = report.model_copy(update={"checks": checks})
    folder = settings.reports_dir() / context.run_id
    csv_path, summary_path, html_path = write_report(report, rows, folder, processing.model)
    record_checks(store, context.run_id, checks)
    metadata = {
        **_report_metadata(report, processing, csv_path, summary_path, html_path),
        **_run_metrics(context, report, processing.ai_model),
        "run_id": context.run_id,
        "analyser_version": processing.analyser_version,
    }
    if (spec := processing.model.definition.summary).flagged is not None:
        metadata["flagged_documents"] = _flagged_table(flagged_documents(rows, processing.model), spec.rank_by)
    record_project(context.instance, batch.project)
    context.log.info(
        f"Run summary: {report.documents} documents, {metadata['ok']} ok ({report.cached} from cache), "
        f"{report.failed} failed, {report.status_counts.get(DocumentStatus.pending, 0)} pending; report in {folder}"
    )
    return Concluded(report=report, checks=checks, metadata=metadata, csv_path=csv_path)


def _check_metadata(outcome: CheckOutcome) -> dict:
    return {"value": outcome.value, "threshold": outcome.threshold}


def _fail_on_policy(concluded: Concluded, batch: RegisteredBatch) -> None:
    report = concluded.report
    if report.failed and batch.on_document_failure is FailurePolicy.fail:
        raise dg.Failure(
            f"{report.failed} of {report.documents} documents failed (on_document_failure: fail); see {concluded.csv_path}",
            metadata={"failed": report.failed, "status_counts": dg.MetadataValue.json(report.status_counts)},
        )


@dg.op(tags={"kind": "report"})
def aggregate(
    context: dg.OpExecutionContext,
    batch: RegisteredBatch,
    partition_summaries: list[PartitionSummary],
    document_store: DocumentStoreResource,
) -> None:
    """Summarise the run's stored results into a report (CSV, Markdown, HTML), check them, and record
    the batch's lineage as a materialization of analysed_documents with its checks' evaluations."""
    concluded = _conclude(context, batch, document_store)
    description = f"Documents of project {batch.project} analysed by run {context.run_id}"
    context.log_event(
        dg.AssetMaterialization(
            asset_key=ANALYSED_DOCUMENTS, partition=batch.project, description=description, metadata=concluded.metadata
        )
    )
    for outcome in concluded.checks:
        context.log_event(
            dg.AssetCheckEvaluation(
                asset_key=ANALYSED_DOCUMENTS, check_name=outcome.name, passed=outcome.passed,
                severity=dg.AssetCheckSeverity.ERROR, blocking=True, description=outcome.description,
                metadata=_check_metadata(outcome), partition=batch.project,
            )
        )  # fmt: skip
    context.add_output_metadata(concluded.metadata)
    if failed := concluded.report.failed_checks:
        names = ", ".join(f"{c.name} ({c.description})" for c in failed)
        raise dg.Failure(
            f"The run failed its check {names}; its results and report are stored in {concluded.csv_path.parent}"
        )
    _fail_on_policy(concluded, batch)


@dg.op(
    out={
        "result": dg.Out(dg.Nothing, description="The analysed batch, in the store (the run's results)."),
        **{name: dg.Out(dg.Nothing, is_required=False) for name in CHECK_OUTPUTS},
    },
    tags={"kind": "report"},
)
def conclude_analysed_documents(
    context: dg.OpExecutionContext,
    batch: RegisteredBatch,
    partition_summaries: list[PartitionSummary],
    document_store: DocumentStoreResource,
):
    """aggregate, as the last step of materializing analysed_documents: Dagster records the
    materialization and the checks' results, and fails the run on a failed check."""
    concluded = _conclude(context, batch, document_store)
    yield dg.Output(None, "result", metadata=concluded.metadata)
    for outcome in concluded.checks:
        yield dg.AssetCheckResult(
            check_name=outcome.name, passed=outcome.passed, severity=dg.AssetCheckSeverity.ERROR,
            description=outcome.description, metadata=_check_metadata(outcome),
        )  # fmt: skip
    if not concluded.report.failed_checks:
        _fail_on_policy(concluded, batch)


def _run_metrics(context: dg.OpExecutionContext, report: "BatchReport", ai_model: str) -> dict:
    """Numbers the asset page plots across runs: throughput and latency of what this run analysed,
    and, under a key per ai_model (one plot per model), its failure rate, score, cost and latency."""
    record = context.instance.get_run_record_by_id(context.run_id)
    started = record.start_time if record and record.start_time else None
    seconds = time.time() - started if started else None
    from batch_pipeline.report.report import run_cost_usd  # pandas: only where the report is written

    _, per_1000 = run_cost_usd(report, ai_model)
    measured = {check.name: check.value for check in report.checks}
    per_model = {
        FAILURE_RATE_CHECK: measured.get(FAILURE_RATE_CHECK),
        LABELLED_SCORE_CHECK: measured.get(LABELLED_SCORE_CHECK),
        "cost_per_1000_documents_usd": per_1000,
        "latency_p50_ms": report.latency_p50_ms,
    }
    return {
        # Of the documents this run analysed: none when every one came from the cache or was unusable.
        "docs_per_second": round(report.analysed / seconds, 2) if seconds and report.analysed else None,
        "analysed_this_run": report.analysed,
        "latency_p50_ms": report.latency_p50_ms,
        "latency_p95_ms": report.latency_p95_ms,
        **{f"{name} · {ai_model}": value for name, value in per_model.items() if value is not None},
    }


def _link(path: Path) -> dg.MetadataValue:
    """The report as a link where the deployment serves the reports folder over HTTP (a browser
    opens no file:// link from the UI's page), else its path."""
    if base := settings.reports_url():
        return dg.MetadataValue.url(f"{base.rstrip('/')}/{path.parent.name}/{path.name}")
    return dg.MetadataValue.path(str(path))


def _flagged_table(flagged: list, rank_by: str | None) -> dg.MetadataValue:
    records = [
        dg.TableRecord(
            {"document": doc.filename, "level": doc.level, "items": doc.stored, "first": _first(doc.details)}
        )
        for doc in flagged[:FLAGGED_SHOWN]
    ]
    columns = [dg.TableColumn("document", "string"), dg.TableColumn("level", "string", description=f"the result's {rank_by}" if rank_by else None),
               dg.TableColumn("items", "int"), dg.TableColumn("first", "string", description="its first item, as stored (masked)")]  # fmt: skip
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=columns))


def _first(details: list[dict]) -> str:
    if not details:
        return ""
    text = "; ".join(f"{key}: {value}" for key, value in details[0].items() if value not in (None, ""))
    return text if len(text) <= 160 else text[:160].rsplit(" ", 1)[0] + " …"


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
        "model_summary": dg.MetadataValue.md(report.summary_markdown()),
        "report_csv": dg.MetadataValue.path(str(csv_path)),
        "report_summary": dg.MetadataValue.path(str(summary_path)),
        "report_html": _link(html_path),
        "run": dg.MetadataValue.dagster_run(report.run_id),
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
