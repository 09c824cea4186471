"""The per-run report: status counts, the model's own summary, a CSV of rows and a Markdown page."""

from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from batch_pipeline.analysis_models import AnalysisModel, SummarySections
from batch_pipeline.store import OK, PENDING

CSV_NAME = "results.csv"
SUMMARY_NAME = "summary.md"


class BatchReport(BaseModel):
    run_id: str
    project: str
    model_key: str
    ai_model: str
    custom_instructions: str
    status_counts: dict[str, int]
    cached: int
    model_summary: SummarySections

    @property
    def documents(self) -> int:
        return sum(self.status_counts.values())

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.status_counts.items() if status not in (OK, PENDING))

    def to_markdown(self) -> str:
        lines = [
            f"# Batch report — run {self.run_id}",
            "",
            f"- project: `{self.project}`",
            f"- model_key: `{self.model_key}`",
            f"- ai_model: `{self.ai_model}`",
            f"- custom_instructions: {self.custom_instructions!r}",
            f"- documents: {self.documents} (ok: {self.status_counts.get(OK, 0)}, "
            f"served from cache: {self.cached}, failed: {self.failed})",
            "",
            "## Documents per status",
            "",
            _table(self.status_counts, "status", "documents"),
        ]
        for title, values in self.model_summary.items():
            lines += ["", f"## {title}", "", _table(values, "", "value") if values else "_none_"]
        return "\n".join(lines) + "\n"


def _table(values: dict[str, int | float], key_header: str, value_header: str) -> str:
    frame = pd.DataFrame({key_header or "item": list(values), value_header: list(values.values())})
    return frame.to_markdown(index=False)


def build_report(run_id: str, project: str, model: AnalysisModel, rows: pd.DataFrame) -> BatchReport:
    ok_rows = rows[rows["status"] == OK]
    results = [model.parse_result(text) for text in ok_rows["result"]]
    first = rows.iloc[0] if len(rows) else None
    return BatchReport(
        run_id=run_id,
        project=project,
        model_key=model.key,
        ai_model="" if first is None else first["ai_model"],
        custom_instructions="" if first is None else first["custom_instructions"],
        status_counts={str(k): int(v) for k, v in rows["status"].value_counts().sort_index().items()},
        cached=int(ok_rows["cached_from_run_id"].notna().sum()),
        model_summary=model.summarize(results),
    )


def write_report(report: BatchReport, rows: pd.DataFrame, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, summary_path = folder / CSV_NAME, folder / SUMMARY_NAME
    rows.drop(columns=["raw_output"]).to_csv(csv_path, index=False)
    summary_path.write_text(report.to_markdown(), encoding="utf-8")
    return csv_path, summary_path
