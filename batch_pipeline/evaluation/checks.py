"""The checks of analysed_documents as plain functions: the run's share of failed documents against
its line, and its score on labelled answers (evaluate's rules) against its minimum."""

from batch_pipeline.batch.request import RunChecks
from batch_pipeline.evaluation.evaluate import evaluate
from batch_pipeline.evaluation.labels import BadLabels, read_run_labels
from batch_pipeline.evaluation.runs import load_run
from batch_pipeline.outcome import FAILURE_RATE_CHECK, LABELLED_SCORE_CHECK, CheckOutcome, count_failed
from batch_pipeline.store import DocumentStore


def run_checks(
    store: DocumentStore, run_id: str, checks: RunChecks, status_counts: dict[str, int]
) -> list[CheckOutcome]:
    """Every check of a run whose results are stored; the labelled score only where it has labels.
    Never raises: a check that cannot be evaluated fails, saying why, and the report is still written."""
    outcomes = [failure_rate_check(status_counts, checks.max_failure_rate)]
    if checks.labels is not None:
        try:
            outcomes.append(labelled_score_check(store, run_id, read_run_labels(checks.labels), checks.min_score))
        except BadLabels as e:
            outcomes.append(_unscored(checks.min_score, f"the labels could not be read: {e}"))
        except Exception as e:  # noqa: BLE001 - a check must not keep the run's report from being written
            outcomes.append(_unscored(checks.min_score, f"the labels could not be scored ({type(e).__name__})"))
    return outcomes


def _unscored(line: float | None, why: str) -> CheckOutcome:
    return CheckOutcome(name=LABELLED_SCORE_CHECK, passed=False, value=None, threshold=line, description=why)


def failure_rate_check(status_counts: dict[str, int], line: float | None) -> CheckOutcome:
    documents, failed = sum(status_counts.values()), count_failed(status_counts)
    rate = failed / documents if documents else 0.0
    passed = line is None or rate <= line
    return CheckOutcome(
        name=FAILURE_RATE_CHECK,
        passed=passed,
        value=round(rate, 6),
        threshold=line,
        description=f"{failed} of {documents} documents failed ({rate:.1%}); " + _against(line, "at most"),
    )


def labelled_score_check(store: DocumentStore, run_id: str, labels: list[dict], line: float | None) -> CheckOutcome:
    try:
        evaluation = evaluate(load_run(store, run_id), labels)
    except BadLabels as e:  # e.g. a field the run's analysis does not have (its definition changed)
        return CheckOutcome(name=LABELLED_SCORE_CHECK, passed=False, value=None, threshold=line, description=str(e))
    score = evaluation.overall_score
    passed = line is None or (score is not None and score >= line)
    shown = "no labelled field to score" if score is None else f"overall score {score:.1%}"
    return CheckOutcome(
        name=LABELLED_SCORE_CHECK,
        passed=passed,
        value=score,
        threshold=line,
        description=f"{shown} on {evaluation.matched} of {evaluation.labels} labelled documents; "
        + _against(line, "at least"),
    )


def _against(line: float | None, bound: str) -> str:
    return "no line set" if line is None else f"{bound} {line:.1%} required"
