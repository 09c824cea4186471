"""report.html: the run's report as one self-contained page (inline CSS and SVG charts), rendered
with a Jinja2 template; flagged documents first, with their masked excerpts."""

import json
from dataclasses import dataclass, field

import jinja2
import pandas as pd

from batch_pipeline.outcome import DocumentStatus
from batch_pipeline.report.charts import bar_chart_svg

HTML_NAME = "report.html"
SHOWN_DOCUMENTS = 500  # flagged documents listed; the CSV holds them all


@dataclass
class FlaggedDocument:
    filename: str
    level: str  # the result's risk_level, when the model has one
    findings: list[dict] = field(default_factory=list)  # category, kind, excerpt, line


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
            flagged.append(FlaggedDocument(row.filename, str(result.get("risk_level", "")), findings))
    return sorted(flagged, key=lambda d: (order.get(d.level, 3), d.filename))


def render_html(report, rows: pd.DataFrame) -> str:
    """The page for a BatchReport and its stored rows."""
    charts = [bar_chart_svg(report.status_counts, "Documents per status")]
    charts += [bar_chart_svg(values, title) for title, values in report.model_summary.items() if values]
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
            failures=failed[["filename", "status", "error"]].to_dict("records"),
        )
    )
