"""Cost controls end to end: the pre-run estimate, max_cost_usd at launch and during the run, and
what the report says a run cost and what the Batch API saved."""

import json

import pytest
import yaml

from batch_pipeline import settings
from batch_pipeline.cli.main import main
from batch_pipeline.store import DocumentStore
from batch_pipeline.store.run_budgets import spend_of
from batch_pipeline_tests.conftest import batch_config, llm_run, rows_of, with_llm, write_corpus
from testbed.fake_openai_server import Behaviour, FakeOpenAIServer

# USD per million tokens: dear enough that a few documents cost cents.
PRICES = {"gpt-test": {"input": 100.0, "output": 400.0, "batch_input": 50.0, "batch_output": 200.0}}


@pytest.fixture
def priced(tmp_path, monkeypatch):
    path = tmp_path / "prices.yaml"
    path.write_text(yaml.safe_dump(PRICES))
    monkeypatch.setenv("BATCH_PIPELINE_PRICES", str(path))


def cost_of(rows, llm_api: str = "online") -> float:
    price = PRICES["gpt-test"]
    prefix = "batch_" if llm_api == "batch" else ""
    return (
        float(
            rows["input_tokens"].sum() * price[f"{prefix}input"]
            + rows["output_tokens"].sum() * price[f"{prefix}output"]
        )
        / 1e6
    )


def write_memos(folder, count: int, start: int = 0):
    """Documents alike in shape and length, different in content."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        (folder / f"memo_{i:04d}.md").write_text(
            f"# Memo {i}\n\nCall +1 415 555 {i:04d} or write to person{i}@example.com about order {i * 7}.\n\n"
            + "Terms and conditions apply to every shipment. " * (3 + i % 5)
        )
    return folder


def test_a_launch_whose_estimate_is_over_max_cost_usd_is_refused_before_anything_is_sent(
    pipeline_home, instance, key, tmp_path, priced
):
    corpus = write_corpus(tmp_path / "corpus", 20)
    with FakeOpenAIServer() as server:
        result = llm_run(instance, server, corpus, raise_on_error=False, max_cost_usd=0.001)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).event_specific_data.error.message
    assert "Refused before sending any document" in failure and "over max_cost_usd $0.001" in failure
    assert "the estimate for its 20 documents to send is $" in failure
    assert server.requests == [] and server.batch_creations == 0  # not even the model check


def test_a_model_without_a_price_cannot_run_under_max_cost_usd(pipeline_home, instance, key, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 2)
    with FakeOpenAIServer() as server:
        result = llm_run(instance, server, corpus, raise_on_error=False, max_cost_usd=5)
    failure = next(e for e in result.all_events if e.is_step_failure).event_specific_data.error.message
    assert "max_cost_usd needs a price for 'gpt-test'" in failure and server.requests == []


@pytest.mark.parametrize("llm_api", ["online", "batch"])
def test_a_run_whose_model_turns_verbose_stops_within_its_budget(
    pipeline_home, instance, key, tmp_path, priced, llm_api
):
    corpus = write_corpus(tmp_path / "corpus", 40)
    budget = 12.0
    # The estimate (from the offline answers) fits; the model then answers with 2,000 tokens more each.
    with FakeOpenAIServer(Behaviour(extra_completion_tokens=2000, latency=0.02)) as server:
        result = llm_run(
            instance, server, corpus, max_cost_usd=budget, llm_api=llm_api,
            llm_options={"max_output_tokens": 2500, "max_concurrent_requests": 8, "batch_poll_max_seconds": 0.3},
        )  # fmt: skip
    assert result.success
    rows = rows_of(result.run_id)
    counts = rows["status"].value_counts().to_dict()
    assert set(counts) == {"ok", "budget_exceeded"} and counts["ok"] >= 5, counts
    billed = sum(1 for r in server.requests if r.status == 200 and r.document)
    assert billed == counts["ok"], "a request was answered (and billed) for a document not recorded ok"
    store = DocumentStore(settings.database_url())
    _, ledger, in_flight = spend_of(store, result.run_id)
    store.close()
    # The ledger holds every answer at its real cost, plus the response-format probe at its worst case.
    assert cost_of(rows[rows["status"] == "ok"], llm_api) < ledger <= budget and in_flight == pytest.approx(0)
    reasons = rows[rows["status"] == "budget_exceeded"]["error"]
    assert reasons.str.contains("could take the run's spend past max_cost_usd").all()


def test_the_report_shows_what_a_run_cost_and_what_the_batch_api_saved(pipeline_home, instance, key, tmp_path, priced):
    corpus = write_corpus(tmp_path / "corpus", 10)
    with FakeOpenAIServer() as server:
        result = llm_run(instance, server, corpus, llm_api="batch", llm_options={"batch_poll_max_seconds": 0.3})
    rows = rows_of(result.run_id)
    metadata = next(
        e.event_specific_data.materialization.metadata
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    )
    cost, saved = metadata["estimated_cost_usd"].value, metadata["batch_api_saved_usd"].value
    assert cost == pytest.approx(cost_of(rows, "batch"), rel=1e-6)
    assert saved == pytest.approx(cost_of(rows, "online") - cost, rel=1e-6) and saved > 0


def test_estimate_excludes_cached_documents_and_after_one_run_is_within_ten_percent(
    pipeline_home, instance, key, tmp_path, priced, capsys
):
    first_batch, next_batch = write_memos(tmp_path / "first", 40), write_memos(tmp_path / "next", 40, start=100)
    config_path = tmp_path / "next.yaml"
    config_path.write_text(yaml.safe_dump(with_llm(batch_config(str(next_batch), ai_model="gpt-test"))))

    def estimate() -> dict:
        capsys.readouterr()
        assert main(["estimate", str(config_path), "--format", "json"]) == 0
        return json.loads(capsys.readouterr().out)

    uncalibrated = estimate()
    assert uncalibrated["documents_to_send"] == 40 and uncalibrated["calibrated_from_documents"] == 0
    with FakeOpenAIServer() as server:
        llm_run(instance, server, first_batch)  # similar documents: the usage the calibration learns from
        sent_before = len(server.requests)
        calibrated = estimate()
        assert len(server.requests) == sent_before  # the estimate itself sends nothing
        assert calibrated["calibrated_from_documents"] == 40
        actual_rows = rows_of(llm_run(instance, server, next_batch).run_id)
    actual = int(actual_rows["input_tokens"].sum() + actual_rows["output_tokens"].sum())
    estimated = calibrated["input_tokens"] + calibrated["output_tokens"]
    assert abs(estimated - actual) / actual <= 0.10, (estimated, actual, uncalibrated)
    assert calibrated["estimated_cost_usd"] == pytest.approx(calibrated["online_cost_usd"])
    assert calibrated["batch_cost_usd"] == pytest.approx(calibrated["online_cost_usd"] / 2, rel=1e-6)

    assert estimate()["documents_to_send"] == 0  # every document of the batch is now cached
