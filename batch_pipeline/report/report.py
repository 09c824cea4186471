"""The per-run report: status counts, the model's own summary, a CSV of rows, a Markdown page and an HTML page."""

from collections import Counter
from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from batch_pipeline.analysis.analysis import Analysis
from batch_pipeline.analysis.summary import SummarySections
from batch_pipeline.costs.prices import estimate_cost, price_for, price_table
from batch_pipeline.outcome import CheckOutcome, DocumentStatus, LlmApi, count_failed
from batch_pipeline.report.csv_cells import write_csv
from batch_pipeline.report.result_columns import with_result_columns

CSV_NAME = "results.csv"
SUMMARY_NAME = "summary.md"
NOT_KEPT_NOTE = (
    "Each result keeps at most `$BATCH_PIPELINE_MAX_FINDINGS` items per list, and the counts above are of "
    "those kept. Found but not kept:"
)


class ModelUsage(BaseModel):
    """Tokens this run spent with one model through one API (cached results cost nothing and are not counted)."""

    model: str
    llm_api: LlmApi
    requests: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    estimated_cost_usd: float | None  # None: the model is not in the price table
    batch_api_saved_usd: float | None = None  # what the same tokens would have cost online, minus the cost


class BatchReport(BaseModel):
    run_id: str
    project: str
    model_key: str
    ai_model: str
    custom_instructions: str
    definition_digest: str = ""  # of the analysis definition the run was launched with
    status_counts: dict[str, int]
    cached: int
    model_summary: SummarySections
    usage: list[ModelUsage]
    latency_p50_ms: float | None = None  # of the documents this run analysed (not served from cache)
    latency_p95_ms: float | None = None
    # Items the stored results left out, per list (e.g. findings): the summary counts only those kept.
    not_kept: dict[str, int] = {}
    flagged: int | None = None  # documents the definition's summary flags; None: it flags none
    checks: list[CheckOutcome] = []  # how the run's checks ended (empty: not checked yet)
    analysed: int = 0  # documents this run sent to an analyser (neither from the cache nor unusable)

    @property
    def failed_checks(self) -> list[CheckOutcome]:
        return [check for check in self.checks if not check.passed]

    @property
    def estimated_cost_usd(self) -> float | None:
        costs = [u.estimated_cost_usd for u in self.usage]
        return None if any(c is None for c in costs) else round(sum(costs), 6)

    @property
    def batch_api_saved_usd(self) -> float:
        return round(sum(u.batch_api_saved_usd or 0 for u in self.usage), 6)

    @property
    def documents(self) -> int:
        return sum(self.status_counts.values())

    @property
    def failed(self) -> int:
        return count_failed(self.status_counts)

    def summary_markdown(self) -> str:
        """The summary sections as compact tables under bold titles (the asset page shows this;
        a heading there renders page-sized)."""
        parts = []
        for title, values in self.model_summary.items():
            shown = dict(list(values.items())[:SUMMARY_ROWS_SHOWN])
            more = f"\n\n_{len(values) - len(shown)} more in summary.md_" if len(values) > len(shown) else ""
            parts.append(f"**{title}**\n\n" + (_table(shown, "", "value") if values else "_none_") + more)
        if self.not_kept:
            parts.append(f"**Not kept**\n\n{NOT_KEPT_NOTE}\n\n" + _table(self.not_kept, "list", "more, not kept"))
        return "\n\n".join(parts)

    def to_markdown(self) -> str:
        lines = [
            f"# Batch report — run {self.run_id}",
            "",
            f"- project: `{self.project}`",
            f"- model_key: `{self.model_key}`",
            f"- ai_model: `{self.ai_model}`",
            f"- custom_instructions: {self.custom_instructions!r}",
            f"- analysis definition: `{self.definition_digest[:16]}`",
            f"- documents: {self.documents} (ok: {self.status_counts.get(DocumentStatus.ok, 0)}, "
            f"served from cache: {self.cached}, failed: {self.failed})",
            "",
            "## Documents per status",
            "",
            _table(self.status_counts, "status", "documents"),
        ]
        if self.checks:
            lines += ["", "## Checks", ""]
            lines += [f"- {c.name}: {'passed' if c.passed else '**FAILED**'} — {c.description}" for c in self.checks]
            if failed := self.failed_checks:
                names = ", ".join(c.name for c in failed)
                lines += ["", f"The run failed its check {names}: it ended as failed once these results were stored."]
        if self.usage:
            lines += ["", "## Tokens and estimated cost", "", _usage_table(self.usage)]
            if self.batch_api_saved_usd:
                lines += ["", f"The Batch API saved ${self.batch_api_saved_usd:.6f} against online prices."]
        for title, values in self.model_summary.items():
            lines += ["", f"## {title}", "", _table(values, "", "value") if values else "_none_"]
        if self.not_kept:
            lines += ["", "## Not kept", "", NOT_KEPT_NOTE, "", _table(self.not_kept, "list", "more, not kept")]
        return "\n".join(lines) + "\n"


SUMMARY_ROWS_SHOWN = 15


def _table(values: dict[str, int | float], key_header: str, value_header: str) -> str:
    frame = pd.DataFrame({key_header or "item": list(values), value_header: list(values.values())})
    return frame.to_markdown(index=False)


def _usage_table(usage: list[ModelUsage]) -> str:
    frame = pd.DataFrame([u.model_dump() for u in usage]).fillna("unknown price")
    return frame.to_markdown(index=False)


def token_usage(rows: pd.DataFrame) -> list[ModelUsage]:
    spent = rows[rows["cached_from_run_id"].isna() & rows["input_tokens"].notna()]
    if spent.empty:
        return []
    table = price_table()
    models = spent["answered_by_model"].fillna(spent["ai_model"])
    apis = spent["llm_api"].fillna(LlmApi.online.value)
    usage = []
    for (model, llm_api), group in spent.groupby([models, apis]):
        input_tokens, cached, output = (
            int(group[c].fillna(0).sum()) for c in ("input_tokens", "cached_input_tokens", "output_tokens")
        )
        price = price_for(str(model), table)
        cost = estimate_cost(price, input_tokens, cached, output, LlmApi(llm_api))
        online = estimate_cost(price, input_tokens, cached, output, LlmApi.online)
        usage.append(
            ModelUsage(
                model=str(model),
                llm_api=str(llm_api),
                requests=int(group["attempts"].fillna(0).sum()),
                input_tokens=input_tokens,
                cached_input_tokens=cached,
                output_tokens=output,
                estimated_cost_usd=None if cost is None else round(cost, 6),
                batch_api_saved_usd=None if cost is None or online is None else round(online - cost, 6),
            )
        )
    return usage


def run_cost_usd(report: BatchReport, ai_model: str) -> tuple[float | None, float | None]:
    """What a run cost and its cost per 1,000 documents: the estimate of its tokens, nothing for the
    offline analysers, None when the tokens are unpriced."""
    cost = report.estimated_cost_usd if report.usage else (0.0 if ai_model == "local" else None)
    per_1000 = None if cost is None or not report.documents else round(cost / report.documents * 1000, 6)
    return cost, per_1000


def build_report(
    run_id: str, project: str, model: Analysis, rows: pd.DataFrame, checks: list[CheckOutcome] | None = None
) -> BatchReport:
    ok_rows = rows[rows["status"] == DocumentStatus.ok.value]
    stored = [model.parse_stored(text) for text in ok_rows["result"]]
    dumped = [result.model_dump(mode="json") for result, _ in stored]
    spec = model.definition.summary
    not_kept: Counter[str] = Counter()
    for _, omitted in stored:
        not_kept.update(omitted)
    first = rows.iloc[0] if len(rows) else None
    return BatchReport(
        run_id=run_id,
        project=project,
        model_key=model.key,
        ai_model="" if first is None else first["ai_model"],
        custom_instructions="" if first is None else first["custom_instructions"],
        status_counts={str(k): int(v) for k, v in rows["status"].value_counts().sort_index().items()},
        cached=int(ok_rows["cached_from_run_id"].notna().sum()),
        definition_digest=model.digest,
        model_summary=spec.summarise(dumped),
        flagged=None if spec.flagged is None else sum(1 for result in dumped if spec.is_flagged(result)),
        not_kept=dict(not_kept),
        usage=token_usage(rows),
        checks=checks or [],
        analysed=int((rows["cached_from_run_id"].isna() & (rows["attempts"].fillna(0) >= 1)).sum()),
        **_latency_percentiles(ok_rows),
    )


def _latency_percentiles(ok_rows: pd.DataFrame) -> dict[str, float | None]:
    latencies = ok_rows.loc[ok_rows["cached_from_run_id"].isna(), "latency_ms"].dropna().astype(float)
    if latencies.empty:
        return {"latency_p50_ms": None, "latency_p95_ms": None}
    return {"latency_p50_ms": round(latencies.quantile(0.5), 1), "latency_p95_ms": round(latencies.quantile(0.95), 1)}


def write_report(report: BatchReport, rows: pd.DataFrame, folder: Path, model: Analysis) -> tuple[Path, Path, Path]:
    """results.csv (a column per field of the analysis), summary.md and report.html in the run's folder; their paths."""
    from batch_pipeline.report.html import HTML_NAME, render_html  # Jinja2 and leather: loaded only to write one

    folder.mkdir(parents=True, exist_ok=True)
    csv_path, summary_path, html_path = folder / CSV_NAME, folder / SUMMARY_NAME, folder / HTML_NAME
    # 0.1 ms is plenty; a run served from the cache has no latency at all (an all-null column).
    rows = rows.drop(columns=["raw_output"]).assign(latency_ms=pd.to_numeric(rows["latency_ms"]).round(1))
    write_csv(with_result_columns(rows, model.fields, model.json_schema), csv_path)
    summary_path.write_text(report.to_markdown(), encoding="utf-8")
    html_path.write_text(render_html(report, rows, model), encoding="utf-8")
    return csv_path, summary_path, html_path
