from concurrent.futures import ThreadPoolExecutor

import pytest

from batch_pipeline.store import DocumentStore
from batch_pipeline.store.run_budgets import open_run_budget, reserve, settle, spend_of


@pytest.fixture(params=["sqlite", "postgresql"])
def budget_store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'budget.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_store_url")
    store = DocumentStore(url)
    store.create_schema()
    yield store
    store.close()


def test_concurrent_reservations_never_take_more_than_the_budget(budget_store):
    open_run_budget(budget_store, "run-1", 1.0)
    open_run_budget(budget_store, "run-1", 99.0)  # a second step does not reset it
    with ThreadPoolExecutor(8) as pool:
        taken = list(pool.map(lambda _: reserve(budget_store, "run-1", 0.03), range(100)))
    assert sum(taken) == 33
    assert spend_of(budget_store, "run-1") == pytest.approx((1.0, 0.0, 0.99))


def test_a_settled_request_frees_what_it_did_not_cost(budget_store):
    open_run_budget(budget_store, "run-2", 0.10)
    assert reserve(budget_store, "run-2", 0.06)
    assert not reserve(budget_store, "run-2", 0.06)
    settle(budget_store, "run-2", 0.06, 0.01)
    assert reserve(budget_store, "run-2", 0.06)
    assert spend_of(budget_store, "run-2") == pytest.approx((0.10, 0.01, 0.06))
    assert spend_of(budget_store, "no-such-run") is None
