"""The offline content_compliance analyser on a labelled set nobody tuned it on (generated with
Faker, seed 2026, 1,000 documents): recall and precision per category are floors, clean
documents are never flagged, decoys at most once. Figures: docs/detection_quality.md."""

import pytest

from batch_pipeline.analysis.content_compliance import analyse
from testbed.labelled_set import HELD_OUT_SEED, evaluate, labelled_documents

# One worker runs this module, so the labelled set is made once.
pytestmark = pytest.mark.xdist_group("detection_quality")


RECALL_FLOORS = {"phone": 0.85, "payment_card": 0.90, "secret": 0.95, "email": 1.0, "iban": 1.0, "ssn": 1.0}
PRECISION_FLOOR = 0.90


@pytest.fixture(scope="module")
def figures() -> dict:
    return evaluate(analyse, labelled_documents(HELD_OUT_SEED, 1000))


@pytest.mark.parametrize("category", sorted(RECALL_FLOORS))
def test_recall_and_precision_per_category(figures, category):
    measured = figures[category]
    assert measured["documents"] >= 100  # enough of each category for the figure to mean something
    assert measured["recall"] >= RECALL_FLOORS[category], measured
    assert measured["precision"] >= PRECISION_FLOOR, measured


def test_clean_documents_are_never_flagged_and_decoys_at_most_once(figures):
    assert figures["clean_flagged"] == 0
    assert figures["decoy_max_findings"] <= 1
