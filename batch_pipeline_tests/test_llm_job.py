"""The LLM path end to end: the real job, the real openai client, over HTTP to a loopback server."""

import collections
import json
import time

import pytest
import yaml

from batch_pipeline import settings
from batch_pipeline.cli.main import main
from batch_pipeline.store import DocumentStore
from batch_pipeline_tests.conftest import (
    batch_config,
    dagster_execute,
    llm_run,
    rows_of,
    run_job,
    with_llm,
    write_corpus,
)
from testbed.fake_openai_server import Behaviour, FakeOpenAIServer

CLASSIFIED_FAILURES = {"invalid_output", "refused", "truncated", "rate_limited", "provider_error", "request_error"}


def document_requests(server):
    """Requests that carried a document (the response-format probe carries an empty one)."""
    return [r for r in server.requests if r.document]


def test_happy_path(pipeline_home, instance, key, tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus", 30)
    with FakeOpenAIServer(Behaviour(latency=0.05, cached_tokens=64)) as server:
        result = llm_run(instance, server, corpus, custom_instructions="Mention vendor names.")
    assert result.success
    rows = rows_of(result.run_id)
    assert len(rows) == 30 and (rows["status"] == "ok").all()
    assert (rows["input_tokens"] > 0).all() and (rows["output_tokens"] > 0).all()
    assert (rows["cached_input_tokens"] == 64).all()
    assert rows["request_id"].str.startswith("req_").all()
    assert (rows["answered_by_model"] == "gpt-test-2025-01-01").all()
    assert (rows["attempts"] == 1).all()
    assert json.loads(rows.loc["doc_0003.md", "result"])["findings"][0]["category"] == "email"

    completions = server.completions(status=None)
    assert len(completions) == 31  # one probe of the response format, then one request per document
    assert {r.model for r in completions} == {"gpt-test"}
    assert all("Mention vendor names." in r.system for r in completions)
    assert all(r.response_format == "json_schema" for r in completions)
    sent = document_requests(server)
    assert sorted(r.document.splitlines()[0] for r in sent) == sorted(f"# Memo {i}" for i in range(30))

    (materialization,) = result.asset_materializations_for_node("aggregate")
    metadata = materialization.metadata
    assert metadata["input_tokens"].value == int(rows["input_tokens"].sum())
    assert metadata["output_tokens"].value == int(rows["output_tokens"].sum())
    (usage,) = metadata["tokens_per_model"].value
    assert usage["model"] == "gpt-test-2025-01-01" and usage["estimated_cost_usd"] is None  # not in the price table

    assert main(["results", result.run_id]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(r["input_tokens"] > 0 and r["request_id"] and r["latency_ms"] > 0 for r in printed)


def test_price_table_override_prices_the_run(pipeline_home, instance, key, tmp_path, monkeypatch):
    prices = tmp_path / "prices.yaml"
    prices.write_text(yaml.safe_dump({"gpt-test": {"input": 1.0, "cached_input": 0.5, "output": 2.0}}))
    monkeypatch.setenv("BATCH_PIPELINE_PRICES", str(prices))
    corpus = write_corpus(tmp_path / "corpus", 5)
    with FakeOpenAIServer() as server:
        result = llm_run(instance, server, corpus)
    rows = rows_of(result.run_id)
    expected = (rows["input_tokens"].sum() * 1.0 + rows["output_tokens"].sum() * 2.0) / 1e6
    (materialization,) = result.asset_materializations_for_node("aggregate")
    assert materialization.metadata["estimated_cost_usd"].value == pytest.approx(expected, rel=1e-4)
    summary = (pipeline_home / "reports" / result.run_id / "summary.md").read_text()
    assert "Tokens and estimated cost" in summary


def test_two_concurrent_runs_never_mix_models_and_instructions(tmp_path, shared_store_env, key):
    corpus = write_corpus(tmp_path / "corpus", 40)
    runs = {"gpt-test": "Instructions of run A.", "gpt-other": "Instructions of run B."}
    with FakeOpenAIServer(Behaviour(latency=0.05)) as server:
        processes = []
        for n, (ai_model, instructions) in enumerate(runs.items()):
            config = with_llm(
                batch_config(str(corpus), ai_model=ai_model, custom_instructions=instructions, partition_size=10),
                max_concurrent_requests=4,
            )
            path = tmp_path / f"run_{n}.yaml"
            path.write_text(yaml.safe_dump(config))
            env = {**shared_store_env, "OPENAI_API_KEY": key, "OPENAI_BASE_URL": server.url}
            processes.append(dagster_execute(path, None, env))
        for process in processes:
            output, _ = process.communicate(timeout=300)
            assert process.returncode == 0, output[-3000:]
    pairs = collections.Counter((r.model, "run A" in r.system, "run B" in r.system) for r in server.requests)
    assert pairs == {("gpt-test", True, False): 41, ("gpt-other", False, True): 41}  # 40 documents + the probe
    first = [r.at for r in server.requests if r.model == "gpt-test"]
    second = [r.at for r in server.requests if r.model == "gpt-other"]
    assert min(first) < max(second) and min(second) < max(first)  # the runs really overlapped


def test_429_storm_ends_ok_without_double_analysis_and_under_the_limit(pipeline_home, instance, key, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 40)
    client_rpm = 600
    with FakeOpenAIServer(Behaviour(rpm=240)) as server:
        result = llm_run(
            instance, server, corpus,
            llm_options={"requests_per_minute": client_rpm, "max_concurrent_requests": 16, "max_attempts": 20},
        )  # fmt: skip
    rows = rows_of(result.run_id)
    assert (rows["status"] == "ok").all() and len(rows) == 40
    answered = collections.Counter(r.document for r in server.completions(status=200) if r.document)
    assert len(answered) == 40 and set(answered.values()) == {1}
    assert len(server.completions(status=429)) > 5  # the storm happened
    times = sorted(r.at for r in server.requests)
    achieved_per_minute = (len(times) - 1) / (times[-1] - times[0]) * 60
    assert achieved_per_minute <= client_rpm
    assert (rows["attempts"] >= 1).all() and rows["attempts"].sum() == len(document_requests(server))


def test_flaky_provider_every_document_ends_ok_or_classified(pipeline_home, instance, key, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 40)
    with FakeOpenAIServer(Behaviour(error_rate=0.2, malformed_rate=0.1, seed=3)) as server:
        result = llm_run(instance, server, corpus, llm_options={"max_attempts": 3})
    assert result.success
    rows = rows_of(result.run_id)
    assert len(rows) == 40
    assert set(rows["status"]) <= {"ok"} | CLASSIFIED_FAILURES
    failed = rows[rows["status"] != "ok"]
    assert (failed["error"] != "").all()
    assert (failed[failed["status"] == "invalid_output"]["raw_output"].str.len() > 0).all()
    assert (rows["status"] == "ok").sum() >= 30
    repairs = [r for r in server.requests if r.is_repair]
    assert repairs, "malformed answers get a repair attempt"


@pytest.mark.parametrize(
    "behaviour, status, raw_contains",
    [
        (Behaviour(refusal_rate=1.0), "refused", "can't help"),
        (Behaviour(length_rate=1.0), "truncated", "{"),
        (Behaviour(malformed_rate=1.0), "invalid_output", "oops"),
    ],
)
def test_unusable_answers_are_classified_and_kept(
    pipeline_home, instance, key, tmp_path, behaviour, status, raw_contains
):
    corpus = write_corpus(tmp_path / "corpus", 3)
    with FakeOpenAIServer(behaviour) as server:
        result = llm_run(instance, server, corpus)
    rows = rows_of(result.run_id)
    assert (rows["status"] == status).all()
    assert rows["raw_output"].str.contains(raw_contains, regex=False).all()
    expected_requests = 9 if status == "invalid_output" else 3  # two repairs each, only for invalid JSON
    assert len(document_requests(server)) == expected_requests


def test_hanging_requests_time_out_and_are_retried(pipeline_home, instance, key, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 12)
    with FakeOpenAIServer(Behaviour(hang_rate=0.3, hang_seconds=30, seed=5)) as server:
        started = time.monotonic()
        options = {"timeout_seconds": 0.5, "max_attempts": 6, "retry_max_wait_seconds": 0.5}
        result = llm_run(instance, server, corpus, llm_options=options)
    assert time.monotonic() - started < 30
    rows = rows_of(result.run_id)
    assert len(rows) == 12 and set(rows["status"]) <= {"ok", "provider_error"}
    assert (rows["status"] == "ok").sum() >= 10
    assert any(r.status == 0 for r in server.requests)  # some requests really hung


@pytest.mark.parametrize(
    "supported, rejection_status, expected_mode",
    [
        ({"json_object_schema", "json_object", "none"}, 500, "json_object_schema"),  # like llama.cpp's server
        ({"json_object", "none"}, 422, "json_object"),
        ({"none"}, 400, "none"),
    ],
)
def test_response_format_falls_back_once_and_keeps_the_mode(
    pipeline_home, instance, key, tmp_path, supported, rejection_status, expected_mode
):
    corpus = write_corpus(tmp_path / "corpus", 8)
    behaviour = Behaviour(supported_formats=supported, format_rejection_status=rejection_status, has_model_route=False)
    with FakeOpenAIServer(behaviour) as server:
        result = llm_run(instance, server, corpus)
    assert (rows_of(result.run_id)["status"] == "ok").all()
    rejected = [r for r in server.requests if r.status == rejection_status]
    accepted = [r for r in server.requests if r.status == 200]
    assert len(rejected) == 3 - len(supported) + 1  # each richer mode is probed once, before any document
    assert all(not r.document for r in rejected)
    assert {r.response_format for r in accepted} == {expected_mode}
    assert len(document_requests(server)) == 8
    if expected_mode != "json_schema":
        assert all('"findings"' in r.system for r in accepted)  # the schema travels in the prompt


def test_a_cached_rerun_sends_nothing(pipeline_home, instance, key, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 10)
    with FakeOpenAIServer() as server:
        first = llm_run(instance, server, corpus)
        sent = len(server.requests)
        second = llm_run(instance, server, corpus)
    assert len(server.requests) == sent == 11  # the probe and 10 documents; the re-run sends nothing
    assert (rows_of(second.run_id)["cached_from_run_id"] == first.run_id).all()


@pytest.mark.parametrize(
    "ai_model, api_key, message",
    [
        ("gpt-test", "sk-wrong", "refused the API key"),
        ("gpt-nope", "sk-test-key", "does not serve model 'gpt-nope'"),
    ],
)
def test_wrong_key_or_unknown_model_fails_before_any_completion(
    pipeline_home, instance, tmp_path, monkeypatch, ai_model, api_key, message
):
    monkeypatch.setenv("OPENAI_API_KEY", api_key)
    corpus = write_corpus(tmp_path / "corpus", 5)
    with FakeOpenAIServer() as server:
        result = llm_run(instance, server, corpus, raise_on_error=False, ai_model=ai_model)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "create_document_records"
    assert message in failure.event_specific_data.error.message
    assert server.requests == []
    store = DocumentStore(settings.database_url())
    assert store.count_documents() == 0
    store.close()


def test_missing_key_fails_with_a_clear_message(pipeline_home, instance, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    corpus = write_corpus(tmp_path / "corpus", 2)
    run_config = {**batch_config(str(corpus), ai_model="gpt-test")}
    result = run_job(instance, run_config, raise_on_error=False)
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "OPENAI_API_KEY is not set" in failure.event_specific_data.error.message


def test_the_key_appears_nowhere_after_runs(tmp_path, monkeypatch):
    import dagster as dg

    secret = "sk-live-DO-NOT-LEAK-8f3a9c2e71"
    home, store_home = tmp_path / "dagster_home", tmp_path / "pipeline_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("BATCH_PIPELINE_HOME", str(store_home))
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    corpus = write_corpus(tmp_path / "corpus", 6)
    behaviour = Behaviour(api_key=secret, error_rate=0.3, malformed_rate=0.2)
    with FakeOpenAIServer(behaviour) as server, dg.instance_for_test(temp_dir=str(home)) as instance:
        ok_run = llm_run(instance, server, corpus, llm_options={"max_attempts": 2})
        monkeypatch.setenv("OPENAI_API_KEY", secret + "-wrong")
        refused_run = llm_run(instance, server, corpus, raise_on_error=False, project="other")
    assert ok_run.success and not refused_run.success
    scanned = 0
    for folder in (home, store_home):
        for path in folder.rglob("*"):
            if path.is_file():
                scanned += 1
                assert secret.encode() not in path.read_bytes(), path
    assert scanned > 5


def test_429s_do_not_use_up_attempts(pipeline_home, instance, key, tmp_path):
    """A 429 is the provider pacing us: with a single attempt allowed, every document still ends ok."""
    corpus = write_corpus(tmp_path / "corpus", 30)
    with FakeOpenAIServer(Behaviour(rpm=300)) as server:
        result = llm_run(instance, server, corpus, llm_options={"max_attempts": 1, "max_concurrent_requests": 16})
    rows = rows_of(result.run_id)
    assert (rows["status"] == "ok").all() and len(rows) == 30
    assert len(server.completions(status=429)) > 0  # the provider did pace us


def test_a_document_rate_limited_past_the_wait_ends_rate_limited_with_its_reason(
    pipeline_home, instance, key, tmp_path
):
    corpus = write_corpus(tmp_path / "corpus", 4)
    with FakeOpenAIServer(Behaviour(rpm=2)) as server:  # after the probe, the next slot is 30 s away
        # The provider asks every document to come back later than the 2 s the run may wait, so
        # they end at once instead of waiting.
        options = {"rate_limit_wait_seconds": 2, "max_concurrent_requests": 4}
        started = time.monotonic()
        result = llm_run(instance, server, corpus, llm_options=options)
        assert time.monotonic() - started < 30
    rows = rows_of(result.run_id)
    assert result.success and (rows["status"] == "rate_limited").all() and len(rows) == 4
    # The first was answered 429; the others found no slot within the wait (the 429 paused everyone).
    assert rows["error"].str.contains("rate_limit_wait_seconds").all()
    assert rows["error"].str.contains("still HTTP 429 after").any()


def test_garbled_answers_are_repaired_up_to_max_repairs(pipeline_home, instance, key, tmp_path):
    """One garbled answer in five: with two repairs a document fails only if three answers in a row
    are garbled (0.8 %), where a single repair lost one in twenty-five."""
    corpus = write_corpus(tmp_path / "corpus", 40)
    with FakeOpenAIServer(Behaviour(malformed_rate=0.2, seed=11)) as server:
        result = llm_run(instance, server, corpus, llm_options={"max_repairs": 2})
    rows = rows_of(result.run_id)
    assert (rows["status"] == "ok").sum() >= 38
    assert len([r for r in server.requests if r.is_repair]) >= 4


def logged(instance, run_id: str) -> str:
    return "\n".join(entry.user_message for entry in instance.all_logs(run_id))


def test_limits_announced_by_the_provider_are_learned_logged_and_kept(pipeline_home, instance, key, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 60)
    with FakeOpenAIServer(Behaviour(rpm=600, latency=0.05, announce_limits=True)) as server:
        result = llm_run(instance, server, corpus)
    rows = rows_of(result.run_id)
    assert (rows["status"] == "ok").all() and len(rows) == 60
    assert len(server.completions(status=429)) <= 0.02 * len(server.requests)
    messages = logged(instance, result.run_id)
    assert "rate limits: 600 requests/min (the provider announces 600 requests/min)" in messages
    assert "paced to 600 requests/min (headers)" in messages


def test_a_429_storm_from_a_provider_without_headers_converges(pipeline_home, instance, key, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 120)
    with FakeOpenAIServer(Behaviour(rpm=300, latency=0.05)) as server:  # 5 a second, announced nowhere
        result = llm_run(instance, server, corpus)
    rows = rows_of(result.run_id)
    assert (rows["status"] == "ok").all() and len(rows) == 120
    requests = sorted(server.requests, key=lambda r: r.at)
    later = requests[len(requests) // 2 :]
    assert sum(r.status == 429 for r in later) <= 0.1 * len(later)  # settled near the limit
    assert "HTTP 429 and no per-minute requests limit known: pacing at" in logged(instance, result.run_id)


def test_rate_limits_errors_and_garbled_answers_together_lose_nothing(pipeline_home, instance, key, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 60)
    behaviour = Behaviour(rpm=600, latency=0.05, announce_limits=True, error_rate=0.2, malformed_rate=0.1, seed=5)
    with FakeOpenAIServer(behaviour) as server:
        result = llm_run(instance, server, corpus)
    rows = rows_of(result.run_id)
    assert len(rows) == 60 and (rows["status"] == "ok").sum() >= 58
    assert set(rows["status"]) <= {"ok"} | CLASSIFIED_FAILURES
    assert (rows[rows["status"] != "ok"]["error"] != "").all()


def test_an_unreachable_pace_state_fails_the_run_before_anything_is_sent(
    pipeline_home, instance, key, tmp_path, monkeypatch
):
    monkeypatch.setenv("BATCH_PIPELINE_RATE_LIMIT_URL", "redis://127.0.0.1:1/0")
    corpus = write_corpus(tmp_path / "corpus", 5)
    with FakeOpenAIServer() as server:
        result = llm_run(instance, server, corpus, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "create_document_records"
    assert (
        "the shared pace's Redis at redis://127.0.0.1:1/0 does not answer" in failure.event_specific_data.error.message
    )
    assert server.requests == []


def test_the_response_format_is_remembered_per_endpoint_and_model_until_rejected(
    pipeline_home, instance, key, tmp_path
):
    def probes(server) -> int:
        return sum(1 for r in server.requests if r.document == "")

    corpus = write_corpus(tmp_path / "corpus", 5)  # a new project each run: nothing comes from the cache
    with FakeOpenAIServer(Behaviour(supported_formats={"json_object", "none"})) as server:
        first = llm_run(instance, server, corpus, project="first")
        assert probes(server) == 3  # json_schema and json_object+schema refused, json_object taken
        second = llm_run(instance, server, corpus, project="second")
        assert probes(server) == 3, "the second run reuses what the first found"
        assert "takes response format json_object (as an earlier run found)" in logged(instance, second.run_id)
        assert (rows_of(first.run_id)["status"] == "ok").all() and (rows_of(second.run_id)["status"] == "ok").all()

        server.behaviour.supported_formats = {"none"}  # the server was replaced by one that takes less
        third = llm_run(instance, server, corpus, project="third")
        assert (rows_of(third.run_id)["status"] == "request_error").all()
        assert "no longer takes response format json_object" in logged(instance, third.run_id)
        fourth = llm_run(instance, server, corpus, project="fourth")
        assert probes(server) == 3 + 4 and (rows_of(fourth.run_id)["status"] == "ok").all()
