"""A definition's summary: counts, lengths, numbers, flagged documents and their order."""

from batch_pipeline.analysis.definition import parse_definition
from batch_pipeline_tests.analysis.sample_definition import VALID

SPEC = parse_definition(VALID, "t.yaml", default_key="t")
RESULTS = [
    {"category": "billing", "urgent": True, "product": None, "tags": ["a", "b"], "score": 0.2},
    {"category": "bug", "urgent": False, "product": "app", "tags": [], "score": 0.8},
    {"category": "billing", "urgent": False, "product": "web", "tags": ["c"], "score": 0.5},
]


def test_counts_lengths_numbers_and_flagged_are_summarised():
    summary = SPEC.summary.summarise(RESULTS)
    assert summary["category: documents per value"] == {"billing": 2, "bug": 1}
    assert summary["urgent: documents per value"] == {"false": 2, "true": 1}
    assert summary["tags: items"] == {"total": 3, "documents_with_any": 2, "max_per_document": 2}
    assert summary["score: values"] == {"total": 1.5, "mean": 0.5, "median": 0.5, "max": 0.8}
    assert summary["Documents flagged"] == {"flagged": 1, "not_flagged": 2}


def test_counts_reach_into_a_list_of_objects_and_rank_by_orders_most_severe_first():
    from batch_pipeline.analysis.registry import catalogue

    compliance = catalogue().get("content_compliance")
    spec, schema = compliance.definition.summary, compliance.json_schema
    results = [
        {"findings": [{"category": "email", "kind": "e", "excerpt": "x", "line": 1}], "risk_level": "low",
         "compliant": False, "summary": ""},
        {"findings": [{"category": "secret", "kind": "k", "excerpt": "x", "line": 2},
                      {"category": "email", "kind": "e", "excerpt": "x", "line": 3}], "risk_level": "high",
         "compliant": False, "summary": ""},
        {"findings": [], "risk_level": "none", "compliant": True, "summary": ""},
    ]  # fmt: skip
    summary = spec.summarise(results)
    assert summary["findings.category: items per value"] == {"email": 2, "secret": 1}
    assert [spec.is_flagged(r) for r in results] == [True, True, False]
    assert sorted(range(3), key=lambda i: spec.rank(results[i], schema)) == [1, 0, 2]


def test_an_empty_batch_summarises_to_zeros():
    summary = SPEC.summary.summarise([])
    assert summary["score: values"]["mean"] == 0 and summary["Documents flagged"] == {"flagged": 0, "not_flagged": 0}
