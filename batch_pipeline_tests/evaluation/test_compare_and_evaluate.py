"""compare and evaluate on constructed runs whose disagreements are known: exact figures, for the
built-in content_compliance and for a deployment's own contract_terms."""

import json
import re
from pathlib import Path

import pytest

from batch_pipeline.analysis.registry import catalogue, load_catalogue
from batch_pipeline.cli.main import main
from batch_pipeline.context import ProcessingContext
from batch_pipeline.evaluation.compare import CannotCompare, compare
from batch_pipeline.evaluation.evaluate import evaluate
from batch_pipeline.evaluation.labels import BadLabels, read_labels
from batch_pipeline.evaluation.runs import load_run
from batch_pipeline.outcome import AnalysisOutcome
from batch_pipeline_tests.conftest import register_texts

EXAMPLES = Path(__file__).parents[2] / "examples" / "analyses"
TEXTS = ["doc zero", "doc one", "doc two", "doc three"]


def finding(category: str, line: int) -> dict:
    return {"category": category, "kind": category, "excerpt": "x", "line": line}


def compliance(findings: list[dict], risk: str, summary: str = "s") -> str:
    return json.dumps({"findings": findings, "risk_level": risk, "compliant": not findings, "summary": summary})


def record(store, run_id: str, context, results: list[str | None], **usage) -> list[str]:
    ids = register_texts(store, run_id, context, TEXTS)
    for document_id, result in zip(ids, results, strict=True):
        if result is None:
            outcome = AnalysisOutcome(status="analysis_error", error="boom")
        else:
            outcome = AnalysisOutcome(status="ok", result=result, **usage)
        store.record_outcome(run_id, document_id, outcome)
    return ids


@pytest.fixture
def two_compliance_runs(store):
    local = ProcessingContext(model_key="content_compliance", ai_model="local").pinned(catalogue())
    llm = ProcessingContext(model_key="content_compliance", ai_model="gpt-4.1-mini").pinned(catalogue())
    record(store, "run-local", local, [
        compliance([finding("email", 1)], "low"),
        compliance([finding("secret", 1)], "high"),
        compliance([finding("email", 1), finding("phone", 2)], "medium", "two found"),
        compliance([], "none"),
    ], latency_ms=10.0)  # fmt: skip
    record(store, "run-llm", llm, [
        compliance([finding("email", 1)], "low"),  # the same answer
        compliance([finding("secret", 1)], "medium"),  # another risk level
        compliance([finding("email", 1)], "medium", "one found"),  # a finding less, another summary
        None,  # failed: not compared
    ], input_tokens=1000, output_tokens=100, latency_ms=200.0, answered_by_model="gpt-4.1-mini")  # fmt: skip
    return store


def test_compare_gives_agreement_per_field_by_its_rule_and_the_disagreements_side_by_side(two_compliance_runs):
    store = two_compliance_runs
    comparison = compare([load_run(store, "run-local"), load_run(store, "run-llm")])
    [pair] = comparison.pairs
    assert (pair.documents_in_both, pair.documents_compared, pair.agree_entirely_share) == (4, 3, round(1 / 3, 4))
    fields = {f.field: f for f in pair.fields}
    assert fields["risk_level"].agreement == round(2 / 3, 4) and fields["risk_level"].rule == "exact match"
    # Findings as sets by category and line: {email@1, phone@2} against {email@1} is F1 2/3.
    assert fields["findings"].agreement == round((1 + 1 + 2 / 3) / 3, 4)
    assert fields["findings"].rule == "F1 of the list's items as sets (items by category, line)"
    assert fields["compliant"].agreement == 1.0 and fields["summary"].agreement == round(2 / 3, 4)
    assert [(d.filename, d.field) for d in comparison.disagreements] == [
        ("1.md", "risk_level"), ("2.md", "findings"), ("2.md", "summary")]  # fmt: skip
    assert comparison.disagreements[0].values == {"run-local": "high", "run-llm": "medium"}
    local, llm = comparison.runs
    assert llm.status_counts == {"analysis_error": 1, "ok": 3} and llm.input_tokens == 3000
    assert local.estimated_cost_usd == 0.0 and llm.estimated_cost_usd > 0
    assert llm.cost_per_1000_documents_usd == pytest.approx(llm.estimated_cost_usd / 4 * 1000)
    assert (local.latency_p50_ms, llm.latency_p50_ms) == (10.0, 200.0)


def test_compare_refuses_runs_of_different_analyses(store):
    record(
        store, "a", ProcessingContext(model_key="content_compliance", ai_model="local").pinned(catalogue()), [None] * 4
    )
    record(
        store, "b", ProcessingContext(model_key="document_metadata", ai_model="local").pinned(catalogue()), [None] * 4
    )
    with pytest.raises(CannotCompare, match="content_compliance, document_metadata"):
        compare([load_run(store, "a"), load_run(store, "b")])


def contract(parties: list[str], date: str | None, law: str | None, days: int | None, renews: bool) -> str:
    return json.dumps({"parties": parties, "effective_date": date, "governing_law": law,
                       "termination_notice_days": days, "auto_renewal": renews})  # fmt: skip


def test_a_user_defined_analysis_is_compared_and_evaluated_by_its_own_schema(store, tmp_path):
    loaded = load_catalogue([EXAMPLES])
    first = ProcessingContext(model_key="contract_terms", ai_model="gpt-a").pinned(loaded)
    second = ProcessingContext(model_key="contract_terms", ai_model="gpt-b").pinned(loaded)
    record(store, "contracts-a", first, [
        contract(["Acme Ltd", "Bolt GmbH"], "2024-03-01", "England and Wales", 60, True),
        contract(["X Inc"], None, "New York", 30, False),
        contract(["P", "Q", "R"], "2023-01-01", None, None, False),
        contract([], None, None, None, False),
    ])  # fmt: skip
    record(store, "contracts-b", second, [
        contract(["acme ltd", "Bolt  GmbH"], "2024-03-01", "england and wales", 60, True),  # normalised: the same
        contract(["X Inc"], "2024-01-01", "New York", 90, False),  # a date and a notice period differ
        contract(["P", "Q"], "2023-01-01", None, None, True),  # a party less, renewal differs
        contract([], None, None, None, False),
    ])  # fmt: skip
    [pair] = compare([load_run(store, "contracts-a"), load_run(store, "contracts-b")]).pairs
    fields = {f.field: f.agreement for f in pair.fields}
    assert fields == {"parties": round((1 + 1 + 0.8 + 1) / 4, 4), "effective_date": 0.75, "governing_law": 1.0,
                      "termination_notice_days": 0.75, "auto_renewal": 0.75}  # fmt: skip
    assert pair.agree_entirely_share == 0.5

    labels = tmp_path / "labels.jsonl"
    labels.write_text("\n".join(json.dumps(line) for line in [
        {"filename": "0.md", "expected": {"parties": ["Acme Ltd", "Bolt GmbH"], "termination_notice_days": 60}},
        {"filename": "1.md", "expected": {"termination_notice_days": 90, "effective_date": "2024-01-01"}},
        {"sha256": "h2", "expected": {"parties": ["P", "Q", "R"], "auto_renewal": False}},
        {"filename": "not-in-the-run.md", "expected": {"auto_renewal": True}},
    ]) + "\n")  # fmt: skip
    evaluation = evaluate(load_run(store, "contracts-a"), read_labels(labels))
    scores = {f.field: f for f in evaluation.fields}
    assert (evaluation.labels, evaluation.matched, evaluation.unmatched) == (4, 3, ["not-in-the-run.md"])
    assert scores["termination_notice_days"].accuracy == 0.5 and scores["termination_notice_days"].labelled == 2
    assert scores["effective_date"].accuracy == 0.0 and scores["auto_renewal"].accuracy == 1.0
    assert (scores["parties"].precision, scores["parties"].recall, scores["parties"].f1) == (1.0, 1.0, 1.0)
    assert "governing_law" not in scores  # no label gives it: not scored
    assert evaluation.overall_score == round((0.5 + 0.0 + 1.0 + 1.0) / 4, 4)
    assert {(m.filename, m.field) for m in evaluation.misses} == {
        ("1.md", "termination_notice_days"),
        ("1.md", "effective_date"),
    }
    # The second run, on the same labels: a party missed costs recall, not precision.
    second_scores = {f.field: f for f in evaluate(load_run(store, "contracts-b"), read_labels(labels)).fields}
    assert (second_scores["parties"].precision, second_scores["parties"].recall) == (1.0, 0.8)


def test_bad_labels_are_named_by_line_all_at_once(tmp_path):
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"filename": "a.md", "expected": {}}\nnot json\n{"expected": {}}\n[1]\n')
    with pytest.raises(BadLabels) as refused:
        read_labels(labels)
    assert [line.split(": ")[0] for line in str(refused.value).splitlines()] == [
        f"{labels}:2",
        f"{labels}:3",
        f"{labels}:4",
    ]


@pytest.mark.parametrize("output_format", ["table", "json", "csv", "html"])
def test_the_commands_print_every_format(two_compliance_runs, tmp_path, capsys, output_format):
    assert main(["compare", "run-local", "run-llm", "--format", output_format]) == 0
    out = capsys.readouterr().out
    if output_format == "json":
        assert json.loads(out)["pairs"][0]["agree_entirely_share"] == round(1 / 3, 4)
    elif output_format == "csv":
        assert out.splitlines()[0].startswith("baseline,other,field,rule,documents,agreement") and "risk_level" in out
    elif output_format == "html":
        assert out.count("<svg") == 2 and "Disagreements, values side by side" in out
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", out)  # self-contained: fetches nothing
    else:
        assert "| risk_level" in out and "agreeing entirely on 33.3%" in out
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"filename": "1.md", "expected": {"risk_level": "high"}}\n')
    assert main(["evaluate", "run-llm", "--labels", str(labels), "--format", output_format]) == 0
    assert "risk_level" in capsys.readouterr().out
    assert main(["compare", "run-local", "no-such-run"]) == 2
    assert "run no-such-run is not in the store" in capsys.readouterr().err
