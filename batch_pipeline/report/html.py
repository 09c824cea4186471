"""report.html: the run's report as one self-contained page (inline CSS and SVG charts), rendered
with a Jinja2 template; flagged documents first, with their masked excerpts.

The page has a bounded size whatever the batch: it lists at most so many documents, findings,
failures and summary rows, cuts long text (the template's ``truncate``), and says how many more
results.csv holds."""

import json
import re
from dataclasses import dataclass, field

import jinja2
import pandas as pd

from batch_pipeline.analysis.analysis import Analysis
from batch_pipeline.analysis.json_schema import field_schema
from batch_pipeline.analysis.stored_result import OMITTED_KEY
from batch_pipeline.outcome import DocumentStatus
from batch_pipeline.report.charts import bar_chart_svg, severity_colors
from batch_pipeline.report.result_columns import cell, columns_of

HTML_NAME = "report.html"
SHOWN_DOCUMENTS = 500  # flagged documents listed; the CSV holds them all
SHOWN_FINDINGS = 10  # per flagged document
SHOWN_FAILURES = 500
SHOWN_LABELS = 30  # rows of each summary table, bars of each chart
SHOWN_RESULTS = 100  # documents in the results table, a column per field of the analysis
STATUS_COLORS = {DocumentStatus.ok.value: "#54a24b", DocumentStatus.pending.value: "#9e9e9e"} | {
    status.value: "#d62728" for status in DocumentStatus if status not in (DocumentStatus.ok, DocumentStatus.pending)
}


@dataclass
class FlaggedDocument:
    filename: str
    level: str  # the value of the definition's rank_by field, when it has one
    fields: dict[str, object] = field(default_factory=dict)  # the result's other top-level fields (lists joined)
    details: list[dict] = field(default_factory=list)  # the first SHOWN_FINDINGS items of the `details` list
    stored: int = 0  # items of that list in the stored result
    not_kept: int = 0  # its items the stored result left out (over $BATCH_PIPELINE_MAX_FINDINGS)


def _environment() -> jinja2.Environment:
    loader = jinja2.PackageLoader("batch_pipeline.report", "templates")
    environment = jinja2.Environment(loader=loader, autoescape=jinja2.select_autoescape(["html", "j2"]))
    environment.filters["plain"] = plain_text
    return environment


MARKDOWN_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
MARKDOWN_MARKS = re.compile(r"(\*\*|__|`|^#{1,6}\s+)", re.MULTILINE)


def plain_text(text: str) -> str:
    """Markdown's marks taken out of an excerpt (converted documents are markdown): what a reader sees."""
    return MARKDOWN_MARKS.sub("", MARKDOWN_LINK.sub(r"\1", text))


def flagged_documents(rows: pd.DataFrame, model: Analysis) -> list[FlaggedDocument]:
    """Documents the definition's summary flags (e.g. those with findings, already masked by the
    analyser), the most severe first by its rank_by field."""
    spec, schema = model.definition.summary, model.json_schema
    shown = [
        name for name, kind in model.fields.items() if kind != "object" and name not in (spec.rank_by, spec.details)
    ]
    ranked = []
    for row in rows[rows["status"] == DocumentStatus.ok.value].itertuples():
        result = json.loads(row.result or "{}")
        if not spec.is_flagged(result):
            continue
        items = (result.get(spec.details) or []) if spec.details else []
        not_kept = (result.get(OMITTED_KEY) or {}).get(spec.details, 0) if spec.details else 0
        document = FlaggedDocument(
            filename=row.filename,
            level="" if spec.rank_by is None else str(result.get(spec.rank_by, "")),
            fields={name: cell(result.get(name)) for name in shown},
            details=[item if isinstance(item, dict) else {"value": item} for item in items[:SHOWN_FINDINGS]],
            stored=len(items),
            not_kept=not_kept,
        )
        ranked.append((spec.rank(result, schema), row.filename, document))
    return [document for _, _, document in sorted(ranked, key=lambda item: item[:2])]


def results_table(rows: pd.DataFrame, model: Analysis) -> tuple[list[str], list[dict]]:
    """The first SHOWN_RESULTS answered documents, a column per top-level field (as results.csv has them)."""
    columns = columns_of(model.fields, model.json_schema)
    table = []
    for row in rows[rows["status"] == DocumentStatus.ok.value].head(SHOWN_RESULTS).itertuples():
        result = json.loads(row.result or "{}")
        cells = {
            column: len(result.get(field) or []) if column != field else cell(result.get(field))
            for column, field in columns.items()
        }
        table.append({"document": row.filename, **cells})
    return ["document", *columns], table


def render_html(report, rows: pd.DataFrame, model: Analysis) -> str:
    """The page for a BatchReport, its stored rows and the analysis that produced them."""
    summary = {title: _shown_labels(values) for title, values in report.model_summary.items()}
    rank_by = model.definition.summary.rank_by
    levels = [str(v) for v in (field_schema(model.json_schema, rank_by) or {}).get("enum") or []] if rank_by else []
    statuses = dict(sorted(report.status_counts.items(), key=lambda item: (item[0] != DocumentStatus.ok, item[0])))
    charts = [bar_chart_svg(statuses, "Documents per status", STATUS_COLORS)]
    for title, values in summary.items():
        if not values:
            continue
        if levels and title.startswith(f"{rank_by}:"):  # its levels in order, coloured by severity
            values = {level: values[level] for level in levels if level in values} | values
            charts.append(bar_chart_svg(values, title, severity_colors(levels)))
        else:
            charts.append(bar_chart_svg(values, title))
    failed = rows[~rows["status"].isin([DocumentStatus.ok.value, DocumentStatus.pending.value])]
    flagged = flagged_documents(rows, model)
    result_columns, results = results_table(rows, model)
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            report=report,
            charts=charts,
            flagged=flagged[:SHOWN_DOCUMENTS],
            rank_by=model.definition.summary.rank_by,
            result_columns=result_columns,
            results=results,
            ok_count=int((rows["status"] == DocumentStatus.ok.value).sum()),
            details_name=model.definition.summary.details,
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
