"""compare's and evaluate's output: a table (Markdown), JSON, CSV, or one self-contained HTML page
with its charts inline (agreement or score per field; cost against quality)."""

import io
import json
from dataclasses import dataclass

import jinja2
import pandas as pd

from batch_pipeline.evaluation.compare import Comparison
from batch_pipeline.evaluation.evaluate import Evaluation
from batch_pipeline.report.charts import bar_chart_svg, dots_chart_svg
from batch_pipeline.report.csv_cells import write_csv

SHOWN_ROWS = 200  # of the disagreements and misses, in the table and the page
FORMATS = ("table", "json", "csv", "html")


@dataclass
class Section:
    title: str
    rows: list[dict]
    more: int = 0

    @property
    def columns(self) -> list[str]:
        return list(self.rows[0]) if self.rows else []


def _run_rows(runs) -> list[dict]:
    return [
        {"run": r.run_id, "ai_model": r.ai_model, "instructions": r.custom_instructions[:60], "documents": r.documents,
         "statuses": ", ".join(f"{k} {v}" for k, v in r.status_counts.items()), "input_tokens": r.input_tokens,
         "output_tokens": r.output_tokens, "cost_usd": r.estimated_cost_usd, "per_1000_docs_usd": r.cost_per_1000_documents_usd,
         "latency_p50_ms": r.latency_p50_ms, "latency_p95_ms": r.latency_p95_ms, "checks": r.checks}
        for r in runs
    ]  # fmt: skip


def _shown(rows: list[dict]) -> tuple[list[dict], int]:
    return rows[:SHOWN_ROWS], max(0, len(rows) - SHOWN_ROWS)


def comparison_sections(comparison: Comparison) -> list[Section]:
    sections = [Section("Runs", _run_rows(comparison.runs))]
    for pair in comparison.pairs:
        share = "—" if pair.agree_entirely_share is None else f"{pair.agree_entirely_share:.1%}"
        title = (f"{pair.other} against {pair.baseline}: {pair.documents_compared} documents compared, "
                 f"agreeing entirely on {share}")  # fmt: skip
        sections.append(Section(title, [f.model_dump() for f in pair.fields]))
    rows = [{"document": d.filename, "field": d.field, **{run[:8]: json.dumps(v, ensure_ascii=False) for run, v in d.values.items()}}
            for d in comparison.disagreements]  # fmt: skip
    shown, more = _shown(rows)
    sections.append(Section("Disagreements, values side by side", shown, more))
    return sections


def evaluation_sections(evaluation: Evaluation) -> list[Section]:
    overall = "—" if evaluation.overall_score is None else f"{evaluation.overall_score:.1%}"
    fields = [{**f.model_dump(), "score": round(f.score, 4)} for f in evaluation.fields]
    misses = [{"document": m.filename, "field": m.field, "expected": json.dumps(m.expected, ensure_ascii=False),
               "found": json.dumps(m.found, ensure_ascii=False)} for m in evaluation.misses]  # fmt: skip
    shown, more = _shown(misses)
    return [
        Section("Run", _run_rows([evaluation.run])),
        Section(
            f"Fields: overall score {overall} ({evaluation.matched} of {evaluation.labels} labels matched)", fields
        ),
        Section("Labels naming no document of the run", [{"label": name} for name in evaluation.unmatched]),
        Section("Answers that differ from the label", shown, more),
    ]


def comparison_charts(comparison: Comparison) -> list[str]:
    charts = [bar_chart_svg({f.field: f.agreement for f in pair.fields}, f"Agreement per field: {pair.other[:8]} vs {pair.baseline[:8]}")
              for pair in comparison.pairs]  # fmt: skip
    quality = {comparison.runs[0].run_id: 1.0} | {p.other: p.agree_entirely_share or 0.0 for p in comparison.pairs}
    points = {
        f"{r.ai_model} ({r.run_id[:8]})": (r.cost_per_1000_documents_usd or 0.0, quality[r.run_id])
        for r in comparison.runs
    }
    charts.append(dots_chart_svg(points, "Cost against agreement with the first run", "USD per 1,000 documents",
                                 "documents agreeing entirely"))  # fmt: skip
    return charts


def render(result: Comparison | Evaluation, output_format: str) -> str:
    comparing = isinstance(result, Comparison)
    sections = comparison_sections(result) if comparing else evaluation_sections(result)
    if output_format == "json":
        return result.model_dump_json(indent=2)
    if output_format == "csv":
        rows = ([{"baseline": p.baseline, "other": p.other, **f.model_dump()} for p in result.pairs for f in p.fields]
                if comparing else [{"run": result.run.run_id, **f.model_dump(), "score": f.score} for f in result.fields])  # fmt: skip
        out = io.StringIO()
        write_csv(pd.DataFrame(rows), out)
        return out.getvalue()
    if output_format == "html":
        title = (
            f"Comparison of {len(result.runs)} runs of {result.model_key}"
            if comparing
            else f"Evaluation of run {result.run.run_id}"
        )
        charts = (
            comparison_charts(result)
            if comparing
            else [bar_chart_svg({f.field: f.score for f in result.fields}, "Score per field")]
        )
        environment = jinja2.Environment(
            loader=jinja2.PackageLoader("batch_pipeline.evaluation", "templates"), autoescape=True
        )
        return environment.get_template("evaluation.html.j2").render(title=title, charts=charts, sections=sections)
    lines = []
    for section in sections:
        lines += [f"## {section.title}", ""]
        lines.append(pd.DataFrame(section.rows).to_markdown(index=False) if section.rows else "_none_")
        if section.more:
            lines.append(f"\n{section.more} more (--format json or csv lists them all)")
        lines.append("")
    return "\n".join(lines)
