"""report.html: the run's report as one self-contained page (inline CSS and SVG charts), rendered
with a Jinja2 template; flagged documents first, with their masked excerpts.

The page has a bounded size whatever the batch: it lists at most so many documents, findings,
failures and summary rows, cuts long text (the template's ``truncate``), and says how many more
results.csv holds."""

import json
from dataclasses import dataclass, field

import jinja2
import pandas as pd

from batch_pipeline.analysis.stored_result import OMITTED_KEY
from batch_pipeline.outcome import DocumentStatus
from batch_pipeline.report.charts import bar_chart_svg

HTML_NAME = "report.html"
SHOWN_DOCUMENTS = 500  # flagged documents listed; the CSV holds them all
SHOWN_FINDINGS = 10  # per flagged document
SHOWN_FAILURES = 500
SHOWN_LABELS = 30  # rows of each summary table, bars of each chart


@dataclass
class FlaggedDocument:
    filename: str
    level: str  # the result's risk_level, when the model has one
    findings: list[dict] = field(default_factory=list)  # the first SHOWN_FINDINGS: category, kind, excerpt, line
    stored: int = 0  # findings in the stored result
    not_kept: int = 0  # findings the stored result left out (over $BATCH_PIPELINE_MAX_FINDINGS)


def _environment() -> jinja2.Environment:
    loader = jinja2.PackageLoader("batch_pipeline.report", "templates")
    return jinja2.Environment(loader=loader, autoescape=jinja2.select_autoescape(["html", "j2"]))


def flagged_documents(rows: pd.DataFrame) -> list[FlaggedDocument]:
    """Documents whose result holds findings (already masked by the analyser), the riskiest first."""
    order = {"high": 0, "medium": 1, "low": 2}
    flagged = []
    for row in rows[rows["status"] == DocumentStatus.ok.value].itertuples():
        result = json.loads(row.result or "{}")
        if findings := result.get("findings"):
            not_kept = (result.get(OMITTED_KEY) or {}).get("findings", 0)
            level = str(result.get("risk_level", ""))
            flagged.append(FlaggedDocument(row.filename, level, findings[:SHOWN_FINDINGS], len(findings), not_kept))
    return sorted(flagged, key=lambda d: (order.get(d.level, 3), d.filename))


def render_html(report, rows: pd.DataFrame) -> str:
    """The page for a BatchReport and its stored rows."""
    summary = {title: _shown_labels(values) for title, values in report.model_summary.items()}
    charts = [bar_chart_svg(report.status_counts, "Documents per status")]
    charts += [bar_chart_svg(values, title) for title, values in summary.items() if values]
    failed = rows[~rows["status"].isin([DocumentStatus.ok.value, DocumentStatus.pending.value])]
    flagged = flagged_documents(rows)
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            report=report,
            charts=charts,
            flagged=flagged[:SHOWN_DOCUMENTS],
            flagged_count=len(flagged),
            failures=failed[["filename", "status", "error"]].head(SHOWN_FAILURES).to_dict("records"),
            failure_count=len(failed),
            summary=summary,
            summary_sizes={title: len(values) for title, values in report.model_summary.items()},
        )
    )


def _shown_labels(values: dict[str, int | float]) -> dict[str, int | float]:
    """The first SHOWN_LABELS rows of a summary table: an LLM's labels (a language, say) are any text."""
    return dict(list(values.items())[:SHOWN_LABELS])
