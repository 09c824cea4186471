"""`batch-pipeline compare RUN_A RUN_B ...`: runs of one analysis over the same documents (matched
by content), field by field against the first run, with what each run cost and how fast it was."""

from pydantic import BaseModel

from batch_pipeline.evaluation.rules import rules_for
from batch_pipeline.evaluation.runs import LoadedRun
from batch_pipeline.report.report import run_cost_usd


class RunFigures(BaseModel):
    run_id: str
    label: str
    ai_model: str
    custom_instructions: str
    definition_digest: str | None
    documents: int
    status_counts: dict[str, int]
    input_tokens: int
    output_tokens: int
    estimated_cost_usd: float | None
    cost_per_1000_documents_usd: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    checks: str  # "passed", "failed: <check> (<what it measured>)", or "not checked"


class FieldAgreement(BaseModel):
    field: str
    rule: str
    documents: int  # answered ok by both runs
    agreement: float  # mean score over those documents: 1 = always the same
    disagreeing_documents: int


class Disagreement(BaseModel):
    filename: str
    content_hash: str
    field: str
    values: dict[str, object]  # run_id -> its value


class PairComparison(BaseModel):
    baseline: str
    other: str
    documents_in_both: int
    documents_compared: int  # ok in both
    agree_entirely_share: float | None  # of those compared
    fields: list[FieldAgreement]


class Comparison(BaseModel):
    model_key: str
    runs: list[RunFigures]
    pairs: list[PairComparison]
    disagreements: list[Disagreement]


class CannotCompare(ValueError):
    pass


def figures(run: LoadedRun) -> RunFigures:
    report = run.report
    cost, per_1000 = run_cost_usd(report, run.record.ai_model)
    return RunFigures(
        run_id=run.record.run_id,
        label=run.label,
        ai_model=run.record.ai_model,
        custom_instructions=run.record.custom_instructions,
        definition_digest=run.record.definition_digest,
        documents=report.documents,
        status_counts=report.status_counts,
        input_tokens=sum(u.input_tokens for u in report.usage),
        output_tokens=sum(u.output_tokens for u in report.usage),
        estimated_cost_usd=cost,
        cost_per_1000_documents_usd=per_1000,
        latency_p50_ms=report.latency_p50_ms,
        latency_p95_ms=report.latency_p95_ms,
        checks=_checks(run),
    )


def _checks(run: LoadedRun) -> str:
    if run.record.checks is None:
        return "not checked"
    if failed := run.record.failed_checks:
        return "failed its check " + "; ".join(f"{c.name} ({c.description})" for c in failed)
    return "passed"


def compare(runs: list[LoadedRun]) -> Comparison:
    if len(runs) < 2:
        raise CannotCompare("compare needs two runs or more")
    keys = {run.record.model_key for run in runs}
    if len(keys) > 1:
        raise CannotCompare(
            f"the runs analysed with different analyses ({', '.join(sorted(keys))}): compare runs of one model_key"
        )
    baseline = runs[0]
    samples = [result for run in runs for result in run.results.values()]
    rules = rules_for(baseline.analysis.json_schema, samples)
    pairs, disagreeing = [], {}
    for other in runs[1:]:
        both = sorted(set(baseline.statuses) & set(other.statuses))
        compared = [h for h in both if h in baseline.results and h in other.results]
        fields, entirely = [], 0
        scores = {field: [] for field in rules}
        for content_hash in compared:
            a, b = baseline.results[content_hash], other.results[content_hash]
            agrees = True
            for field, rule in rules.items():
                score = rule.score(a.get(field), b.get(field))
                scores[field].append(score)
                if score < 1.0:
                    agrees = False
                    disagreeing.setdefault((content_hash, field), None)
            entirely += agrees
        for field, rule in rules.items():
            values = scores[field]
            fields.append(
                FieldAgreement(
                    field=field,
                    rule=rule.described,
                    documents=len(values),
                    agreement=round(sum(values) / len(values), 4) if values else 0.0,
                    disagreeing_documents=sum(1 for v in values if v < 1.0),
                )
            )
        pairs.append(
            PairComparison(
                baseline=baseline.record.run_id,
                other=other.record.run_id,
                documents_in_both=len(both),
                documents_compared=len(compared),
                agree_entirely_share=round(entirely / len(compared), 4) if compared else None,
                fields=fields,
            )
        )
    disagreements = [
        Disagreement(
            filename=baseline.filenames.get(content_hash)
            or next(r.filenames[content_hash] for r in runs if content_hash in r.filenames),
            content_hash=content_hash,
            field=field,
            values={run.record.run_id: run.results.get(content_hash, {}).get(field) for run in runs},
        )
        for content_hash, field in sorted(disagreeing, key=lambda k: (baseline.filenames.get(k[0], ""), k[1]))
    ]
    return Comparison(
        model_key=baseline.record.model_key,
        runs=[figures(run) for run in runs],
        pairs=pairs,
        disagreements=disagreements,
    )
