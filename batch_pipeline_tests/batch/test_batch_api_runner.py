"""The Batch API runner without Dagster: a batch recorded by a run that died before hearing its id."""

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from batch_pipeline.batch.batch_spend import batch_budget
from batch_pipeline.costs.prices import ModelPrice
from batch_pipeline.costs.spend import SpendLimit
from batch_pipeline.store.provider_batches import batches_of_run, record_preparing, record_submitted
from batch_pipeline.store.run_budgets import spend_of
from batch_pipeline.store.schema import provider_batches
from batch_pipeline_tests.batch.provider_batch_runs import CONTEXT, body_for, create_at_provider, finish, register
from testbed.fake_openai_server import FakeOpenAIServer


@pytest.mark.parametrize("owner", ["died_after_create", "died_before_create", "still_creating"])
def test_a_batch_recorded_before_its_create_is_created_exactly_once(store, owner):
    with FakeOpenAIServer() as server:
        ids = register(store, "first-run", 6)
        row = record_preparing(store, server.url, CONTEXT.cache_key(), "first-run", 0, ids, "first-run/owner").batch
        if owner == "died_after_create":
            create_at_provider(server, store, row.batch_key, ids)
        if owner == "died_before_create":  # and its lease has run out
            with store.engine.begin() as conn:
                conn.execute(provider_batches.update().values(lease_until=datetime.now(UTC) - timedelta(seconds=1)))
        if owner == "still_creating":  # the first run is alive: it creates the batch and records its id

            def first_run_goes_on() -> None:
                time.sleep(1)
                batch_id = create_at_provider(server, store, row.batch_key, ids)
                record_submitted(store, row.batch_key, batch_id, "validating")

            threading.Thread(target=first_run_goes_on).start()
        register(store, "second-run", 6)
        counts, logged = finish(store, server, "second-run", ids)
    assert counts == {"ok": 6}
    assert server.batch_creations == 1, "a batch was created twice"
    assert not [r for r in server.requests if r.batch_id is None and r.document], "a document went online"
    found = any("found at the provider" in message for message in logged)
    assert found or owner != "died_after_create"
    assert not found or owner != "died_before_create"
    if owner != "died_before_create":
        (batch,) = batches_of_run(store, "first-run")
        assert batch.state == "collected" and batch.batch_id == next(iter(server.batches))


def worst_cases(store, run_id: str, ids: list[str], price: ModelPrice):
    """The budget a new record of these documents reserves, in run_id's $1 budget."""
    spend = SpendLimit(store, run_id, 1.0, price, max_output_tokens=512)
    texts = store.document_texts(ids)
    return batch_budget(spend, {d: body_for(texts[d]) for d in ids})


def test_a_batch_in_flight_when_its_run_died_is_counted_once_in_the_budget_its_resume_shares(store):
    """Guarantee: a batch's worst case is reserved with its record, in the run's budget. A run that
    dies with the batch in flight leaves the reservation there (not lost, not leaked); its resume,
    drawing on the same budget, adopts the batch without reserving it again, and collecting it
    settles the reservation at what the lines cost, once. (Before, the reservation lived in the dead
    process: the budget read it reserved for good, and the resume reserved the batch a second time.)"""
    price = ModelPrice(input=100.0, output=400.0, batch_input=50.0, batch_output=200.0)
    with FakeOpenAIServer() as server:
        ids = register(store, "first-run", 4)
        budget = worst_cases(store, "first-run", ids, price)
        row = record_preparing(
            store, server.url, CONTEXT.cache_key(), "first-run", 0, ids, "first-run/owner", budget=budget
        ).batch
        create_at_provider(server, store, row.batch_key, ids)
        worst = sum(budget.worst_case_usd.values())
        assert spend_of(store, "first-run")[2] == pytest.approx(worst), "the dead run's batch stays reserved"
        register(store, "second-run", 4)
        resumed = SpendLimit(store, "first-run", 1.0, price, max_output_tokens=512)  # the resume's shared budget
        counts, _ = finish(store, server, "second-run", ids, resumed)
    assert counts == {"ok": 4} and server.batch_creations == 1
    _, spent, in_flight = spend_of(store, "first-run")
    rows = store.results("second-run")
    paid = (rows["input_tokens"].sum() * 50.0 + rows["output_tokens"].sum() * 200.0) / 1e6
    assert spent == pytest.approx(paid) and 0 < spent < worst and in_flight == pytest.approx(0)


def test_a_dead_runs_record_that_no_later_run_adopts_gives_its_reservation_back(store):
    """Guarantee: a record that a dead owner left without a batch id (its lease run out, nothing at
    the provider) is abandoned by the next step drawing on the same budget, even when no document
    of that step is in it, and its reservation released: the budget is not held forever."""
    price = ModelPrice(input=100.0, output=400.0, batch_input=50.0, batch_output=200.0)
    with FakeOpenAIServer() as server:
        ids = register(store, "first-run", 3)
        budget = worst_cases(store, "first-run", ids, price)
        record_preparing(store, server.url, CONTEXT.cache_key(), "first-run", 0, ids, "first-run/dead", 60, budget)
        with store.engine.begin() as conn:
            conn.execute(provider_batches.update().values(lease_until=datetime.now(UTC) - timedelta(seconds=1)))
        assert spend_of(store, "first-run")[2] > 0
        other = register(store, "second-run", 1)  # a document of its own, not in the dead run's record
        resumed = SpendLimit(store, "first-run", 1.0, price, max_output_tokens=512)
        counts, _ = finish(store, server, "second-run", other[:1], resumed)
    assert counts == {"ok": 1}
    (dead,) = [b for b in batches_of_run(store, "first-run") if b.run_id == "first-run"]
    assert dead.state == "abandoned" and server.batch_creations == 1
    _, spent, reserved = spend_of(store, "first-run")
    assert reserved == pytest.approx(0) and spent > 0
