"""Stopping a run drains what was already bought: answers to requests in flight when SIGTERM or
SIGINT arrives are awaited (up to the llm resource's stop_grace_seconds) and stored; nothing new is
sent; resuming sends only the documents that were never answered."""

import asyncio
import collections
import re
import signal
import subprocess
import time

import dagster as dg
import yaml

from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.batch.partitions import Partition
from batch_pipeline.batch.runner import analyse_documents
from batch_pipeline.context import ProcessingContext
from batch_pipeline.llm.options import LlmSettings
from batch_pipeline.llm.provider import LlmProvider
from batch_pipeline.llm.response_format import ResponseFormatMode
from batch_pipeline.store import DocumentStore
from batch_pipeline_tests.conftest import (
    BATCH_PIPELINE,
    batch_config,
    dagster_execute,
    register_memos,
    with_llm,
    write_corpus,
)
from testbed.fake_openai_server import Behaviour, FakeOpenAIServer

DOCUMENTS = 200
MEMO_RE = re.compile(r"# Memo (\d+)")


def filename_of(document: str) -> str:
    return f"doc_{int(MEMO_RE.search(document).group(1)):04d}.md"


def test_sigterm_stores_the_answers_in_flight_and_resume_pays_for_no_document_twice(tmp_path, shared_store_env):
    """Guarantee: SIGTERM to a run with 64 requests in flight sends nothing new, waits for the answers
    already paid for and stores them `ok`; the run ends FAILURE with the rest `interrupted`; resuming
    sends only those, so the provider gets exactly one request per document."""
    corpus = write_corpus(tmp_path / "corpus", DOCUMENTS)
    home = tmp_path / "dagster_home"
    env = {**shared_store_env, "OPENAI_API_KEY": "sk-test-key", "DAGSTER_HOME": str(home)}
    store = DocumentStore(env["BATCH_PIPELINE_DATABASE_URL"])
    store.create_schema()
    llm = {"response_format": "json_schema", "max_concurrent_requests": 64, "stop_grace_seconds": 60}
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(with_llm(batch_config(str(corpus), ai_model="gpt-test"), **llm)))
    with FakeOpenAIServer(Behaviour(latency=1.5)) as server:
        env["OPENAI_BASE_URL"] = server.url
        process = dagster_execute(config_path, home, env)
        run_id = _wait_for_the_first_answer(store, home)
        # The lone first request is answered: the next 64 go out, answered 1.5 s later. Signal once
        # half of them are in flight (a fixed delay was too short on a busy machine).
        deadline = time.monotonic() + 30
        while server.received - len(server.requests) < 32:  # requests are logged as they are answered
            assert time.monotonic() < deadline and process.poll() is None, "the requests never went out"
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        signalled_at, sent_by_then = time.time(), server.received
        output, _ = process.communicate(timeout=120)
        stopped_in = time.time() - signalled_at
        assert process.returncode != 0, output[-3000:]
        answered_by_then = sum(1 for r in server.requests if r.at <= signalled_at)
        assert sent_by_then - answered_by_then >= 32, "the signal did not find requests in flight"
        counts = store.status_counts(run_id)
        assert counts.get("ok") == server.received, f"{server.received} requests paid for, {counts} stored"
        assert set(counts) == {"ok", "interrupted"} and counts["interrupted"] > 0, counts
        assert stopped_in < 30, "the stop waited for the whole grace period, not for the answers in flight"
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE

        resumed = subprocess.run(
            [BATCH_PIPELINE, "resume", run_id], env=env, capture_output=True, text=True, timeout=300
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        new_run_id = resumed.stdout.split("resumed_as: ")[1].split()[0]
        assert store.status_counts(new_run_id) == {"ok": DOCUMENTS}
        answered = collections.Counter(filename_of(r.document) for r in server.requests)
    store.close()
    assert server.received == DOCUMENTS, f"{server.received} requests for {DOCUMENTS} documents"
    assert len(answered) == DOCUMENTS and set(answered.values()) == {1}


def _wait_for_the_first_answer(store: DocumentStore, home) -> str:
    deadline, run_id = time.monotonic() + 120, None
    while time.monotonic() < deadline:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            runs = instance.get_runs()
        run_id = runs[0].run_id if runs else None
        if run_id and store.status_counts(run_id).get("ok", 0) >= 1:
            return run_id
        time.sleep(0.1)
    raise AssertionError("the run did not get its first answer")


CONTEXT = ProcessingContext(model_key="content_compliance", ai_model="gpt-test").pinned(catalogue())


def _settings(base_url: str, grace: float) -> LlmSettings:
    return LlmSettings(
        api_key="sk-test-key", base_url=base_url, timeout_seconds=60, max_concurrent_requests=8,
        requests_per_minute=None, tokens_per_minute=None, max_attempts=5, rate_limit_wait_seconds=600,
        retry_max_wait_seconds=2, max_output_tokens=1024, max_repairs=2, response_format=ResponseFormatMode.json_schema,
        batch_poll_max_seconds=1, batch_resubmissions=2, stop_grace_seconds=grace,
    )  # fmt: skip


def _register(store: DocumentStore, run_id: str, count: int) -> list[str]:
    return register_memos(store, run_id, CONTEXT, count)


def _analyse_and_stop(store, server, ids, grace: float, stop_after: float) -> tuple[float, int]:
    """Analyse the documents, stopping after stop_after seconds; the seconds the stop took, and how
    many requests the server had received by the stop."""
    partition = Partition(index=0, project="p", context=CONTEXT, document_ids=ids)

    async def run() -> tuple[float, int]:
        provider = LlmProvider(_settings(server.url, grace))
        stopping = asyncio.Event()
        analyser = provider.analyser(ResponseFormatMode.json_schema, "gpt-test", lambda m: None, stopping=stopping)
        analysis = asyncio.ensure_future(
            analyse_documents(store, "r1", partition, analyser, stopping=stopping, grace_seconds=grace)
        )
        await asyncio.sleep(stop_after)
        stopping.set()
        received, stopped_at = server.received, time.monotonic()
        try:
            await analysis
        finally:
            await analyser.close()
        return time.monotonic() - stopped_at, received

    return asyncio.run(run())


def test_answers_slower_than_the_grace_period_are_given_up_and_left_to_resume(store, key):
    """Guarantee: the drain is bounded: requests still unanswered after stop_grace_seconds are
    abandoned and their documents left unfinished (the step marks them interrupted), and no request
    is sent after the stop."""
    ids = _register(store, "r1", 40)
    with FakeOpenAIServer(Behaviour(latency=30)) as server:
        took, received = _analyse_and_stop(store, server, ids, grace=1.0, stop_after=1.0)
        assert 0.9 <= took <= 3, took
        assert server.received == received, "a request was sent after the stop"
    assert set(store.status_counts("r1")) <= {"pending", "interrupted"}


def test_an_answer_stopped_before_its_repair_is_kept_and_resume_repairs_it_without_asking_again(store, key):
    """Guarantee: a repair is a new request: after the stop an answer that needs one is not repaired
    but kept (interrupted, its paid-for raw output stored, the reason saying so), and the requests
    waiting for their slot are not sent (interrupted). The resumed run repairs that answer from
    the stored output: one repair request, the document never sent from scratch again."""
    ids = _register(store, "r1", 8)
    with FakeOpenAIServer(Behaviour(latency=1.0, malformed_rate=1.0)) as server:
        _analyse_and_stop(store, server, ids, grace=10.0, stop_after=0.5)  # the lone first request in flight
        assert server.received == 1 and not [r for r in server.requests if r.is_repair]
        (stopped_document,) = [r.document for r in server.requests]
    rows = store.results("r1")
    assert set(rows["status"]) == {"interrupted"}
    (answered,) = rows[rows["raw_output"].notna()].itertuples()
    assert "not repaired: the run was stopped" in answered.error and answered.raw_output.endswith('"oops')

    _register(store, "r2", 8)
    with FakeOpenAIServer(Behaviour()) as server:
        partition = Partition(index=0, project="p", context=CONTEXT, document_ids=ids)

        async def resume() -> None:
            analyser = LlmProvider(_settings(server.url, 10.0)).analyser(
                ResponseFormatMode.json_schema, "gpt-test", print
            )
            try:
                await analyse_documents(store, "r2", partition, analyser)
            finally:
                await analyser.close()

        asyncio.run(resume())
        sent = collections.Counter((r.document, r.is_repair) for r in server.requests)
    assert store.status_counts("r2") == {"ok": 8}
    assert sent[(stopped_document, True)] == 1 and sent[(stopped_document, False)] == 0, sent
    assert server.received == 8


def test_a_kept_answer_is_repaired_only_while_it_is_the_documents_latest_result(store):
    """Guarantee: an answer kept for repair is used by the next run only while it is the
    document's latest finished result under the context (once a later run has concluded the
    document, e.g. its repair failed too, nothing repairs the old answer again), and never by a
    run with force."""
    from batch_pipeline.outcome import AnalysisOutcome

    (doc,) = _register(store, "r1", 1)
    store.record_outcome("r1", doc, AnalysisOutcome(status="interrupted", error="stopped", raw_output='{"x": '))
    _register(store, "r2", 1)
    assert store.unrepaired_answers("r2", CONTEXT.cache_key(), [doc]) == {doc: '{"x": '}
    store.record_outcome("r2", doc, AnalysisOutcome(status="invalid_output", error="still bad", raw_output="{"))
    _register(store, "r3", 1)
    assert store.unrepaired_answers("r3", CONTEXT.cache_key(), [doc]) == {}
