"""A past run as compare and evaluate see it: its context, its analysis (the definition it was
launched with), its report figures and its results by document content."""

import json
from dataclasses import dataclass

import pandas as pd

from batch_pipeline.analysis.analysis import Analysis, compiled
from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.outcome import DocumentStatus
from batch_pipeline.report.report import BatchReport, build_report
from batch_pipeline.store import DocumentStore
from batch_pipeline.store.run_records import RunRecord, content_hashes, run_record


class RunNotFound(LookupError):
    pass


@dataclass
class LoadedRun:
    record: RunRecord
    analysis: Analysis
    report: BatchReport
    rows: pd.DataFrame  # one per document, with its content_hash
    results: dict[str, dict]  # content_hash -> the ok result (as JSON values)
    statuses: dict[str, str]  # content_hash -> status
    filenames: dict[str, str]  # content_hash -> filename

    @property
    def label(self) -> str:
        instructions = (
            f", instructions {self.record.custom_instructions[:30]!r}" if self.record.custom_instructions else ""
        )
        return f"{self.record.ai_model}{instructions} ({self.record.run_id[:8]})"


def load_run(store: DocumentStore, run_id: str) -> LoadedRun:
    record = run_record(store, run_id)
    if record is None:
        raise RunNotFound(f"run {run_id} is not in the store at {store.shown_url}")
    definition = store.analysis_definition(record.definition_digest) if record.definition_digest else None
    analysis = compiled(definition) if definition is not None else catalogue().get(record.model_key)
    rows = store.results(run_id)
    hashes = content_hashes(store, rows["document_id"].tolist())
    rows = rows.assign(content_hash=rows["document_id"].map(hashes))
    ok = rows[rows["status"] == DocumentStatus.ok.value]
    results = {h: _result(text) for h, text in zip(ok["content_hash"], ok["result"], strict=True)}
    return LoadedRun(
        record=record,
        analysis=analysis,
        report=build_report(run_id, record.project, analysis, rows, record.checks),
        rows=rows,
        results=results,
        statuses=dict(zip(rows["content_hash"], rows["status"], strict=True)),
        filenames=dict(zip(rows["content_hash"], rows["filename"], strict=True)),
    )


def _result(text: str) -> dict:
    data = json.loads(text)
    data.pop("omitted", None)
    return data
