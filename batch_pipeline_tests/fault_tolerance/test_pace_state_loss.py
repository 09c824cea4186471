"""A pace state (the Redis in $BATCH_PIPELINE_RATE_LIMIT_URL) lost or frozen during a run is its own
condition: found within seconds, reported once naming the store (password masked), the documents it
kept back left for `resume` as `pace_state_unavailable`, never blamed on the provider.

Each test runs its own redis-server on a free port (or a listener that never answers) and kills,
freezes or restarts only that: the machine's Redis is never touched."""

import asyncio
import contextlib
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.cli.recovery import resume
from batch_pipeline.context import ProcessingContext
from batch_pipeline.llm.options import LlmSettings
from batch_pipeline.llm.provider import LlmProvider
from batch_pipeline.llm.response_format import ResponseFormatMode
from batch_pipeline.rate_limits.limits import ProviderLimits
from batch_pipeline.rate_limits.pace_state import (
    STORE_RETRIES,
    STORE_TIMEOUT_SECONDS,
    PaceStateUnavailable,
    RedisPaceState,
)
from batch_pipeline.rate_limits.pacer import Pacer
from batch_pipeline_tests.conftest import llm_endpoint, llm_run, rows_of, write_corpus
from testbed.fake_openai_server import Behaviour, FakeOpenAIServer

PASSWORD = "hunter2-store-secret"
LOST = "pace_state_unavailable"
# What finding a frozen store may take: each try waits out the socket timeout, plus the backoff.
DETECTED_WITHIN_SECONDS = (STORE_RETRIES + 1) * STORE_TIMEOUT_SECONDS + 1.5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class OwnRedis:
    """A redis-server of this test's own, with a password, that the test can kill, freeze and restart."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.url = f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"
        self.masked_url = f"redis://:***@127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--requirepass", PASSWORD,
             "--save", "", "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a frozen one too
            self.process.kill()
            self.process.wait(10)

    def freeze(self) -> None:
        """The process stops; the kernel still accepts connections for it, nothing answers them."""
        self.process.send_signal(signal.SIGSTOP)


@pytest.fixture
def own_redis(tmp_path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.kill()


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port that takes connections and never answers (a frozen store from its first call on)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


def when_answered(server: FakeOpenAIServer, count: int, action) -> threading.Thread:
    """Runs action (kill, freeze) once the provider has answered count documents."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        while sum(1 for r in server.requests if r.document and r.status == 200) < count:
            if time.monotonic() > deadline:
                return
            time.sleep(0.005)
        action()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def settings_for(base_url: str, rate_limit_url: str, concurrency: int) -> LlmSettings:
    return LlmSettings(
        api_key="sk-test-key", base_url=base_url, rate_limit_url=rate_limit_url, timeout_seconds=30,
        max_concurrent_requests=concurrency, requests_per_minute=1200, tokens_per_minute=None, max_attempts=5,
        rate_limit_wait_seconds=120, retry_max_wait_seconds=1, max_output_tokens=1024, max_repairs=2,
        response_format=ResponseFormatMode.json_schema, batch_poll_max_seconds=1, batch_resubmissions=2,
    )  # fmt: skip


def test_a_store_killed_mid_run_fails_the_step_once_and_leaves_its_documents_for_resume(
    pipeline_home, instance, key, tmp_path, own_redis, monkeypatch, store
):
    """Guarantee: Redis killed mid-run ends every document not yet sent `pace_state_unavailable`
    (none `provider_error`, none sent), the run fails with one message naming the store, password
    masked (no raw Redis traceback, also not from the learned limits read at the end), and once the
    store answers again `batch-pipeline resume` finishes exactly those documents."""
    corpus = write_corpus(tmp_path / "corpus", 80)
    monkeypatch.setenv("BATCH_PIPELINE_RATE_LIMIT_URL", own_redis.url)
    llm = {"response_format": "json_schema", "max_concurrent_requests": 8, "requests_per_minute": 1200}
    with FakeOpenAIServer(Behaviour(latency=0.02)) as server:
        killer = when_answered(server, 20, own_redis.kill)
        result = llm_run(instance, server, corpus, raise_on_error=False, llm_options=llm, on_document_failure="fail")
        killer.join()
        first_requests = len([r for r in server.requests if r.document])

        assert not result.success
        rows = rows_of(result.run_id)
        counts = rows["status"].value_counts().to_dict()
        assert set(counts) == {"ok", LOST} and counts[LOST] >= 20, counts
        assert first_requests == counts["ok"], "a document was sent and not recorded, or recorded and not sent"
        assert rows.loc[rows["status"] == LOST, "error"].str.contains(own_redis.masked_url, regex=False).all()

        (failure,) = [e.event_specific_data.error for e in result.all_events if e.is_step_failure]
        assert failure.cls_name == "Failure", failure.message  # ours, not redis' ConnectionError
        assert f"the shared pace's Redis at {own_redis.masked_url} stopped answering" in failure.message
        assert f"{counts[LOST]} documents of partition 0 were not sent" in failure.message
        assert f"batch-pipeline resume {result.run_id}" in failure.message
        logged = " ".join(str(e) for e in instance.all_logs(result.run_id))
        assert PASSWORD not in logged and PASSWORD not in " ".join(rows["error"])

        own_redis.start()  # the store answers again, on the same port
        with llm_endpoint(server.url):
            resumed = resume(instance, store, result.run_id)
        again = len([r for r in server.requests if r.document]) - first_requests
    assert resumed.success
    resumed_rows = rows_of(resumed.run_id)
    assert (resumed_rows["status"] == "ok").all()
    assert again == counts[LOST], "resume sent something other than the documents the lost store kept back"
    assert resumed_rows["cached_from_run_id"].eq(result.run_id).sum() == counts["ok"]


def test_a_store_frozen_mid_run_costs_the_partition_one_timeout_not_one_per_document(own_redis):
    """Guarantee: Redis frozen mid-run (accepting connections, answering nothing) is found within one
    socket timeout and its retry; after that the breaker fails the rest of the partition at once, so
    40 documents four at a time take seconds, not a timeout each; none ends `provider_error`."""
    context = ProcessingContext(model_key="content_compliance", ai_model="gpt-test").pinned(catalogue())

    async def analyse_all(settings: LlmSettings) -> list[str]:
        analyser = LlmProvider(settings).analyser(ResponseFormatMode.json_schema, "gpt-test", lambda message: None)
        slots = asyncio.Semaphore(settings.max_concurrent_requests)

        async def one(i: int) -> str:
            async with slots:
                return (await analyser.analyse(f"# Note {i}\n\nWrite to n{i}@example.com.\n", context)).status

        try:
            return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(40))), 60)
        finally:
            await analyser.close()

    with FakeOpenAIServer(Behaviour(latency=0.02)) as server:
        freezer = when_answered(server, 8, own_redis.freeze)
        started = time.monotonic()
        statuses = asyncio.run(analyse_all(settings_for(server.url, own_redis.url, concurrency=4)))
        took = time.monotonic() - started
        freezer.join()
        sent = len([r for r in server.requests if r.document])
    assert set(statuses) == {"ok", LOST} and statuses.count(LOST) >= 20, statuses
    assert sent == statuses.count("ok")
    assert took < DETECTED_WITHIN_SECONDS + 4, f"{took:.1f} s: documents waited out the frozen store one by one"


def test_every_call_into_a_silent_store_fails_fast_with_its_own_error_naming_it_masked():
    """Guarantee: each call into the store (reserve, pause, the learned limits, learning them) raises
    PaceStateUnavailable, never a Redis exception; the first within the socket timeout and its
    retry, every later one at once; the message names the URL with its password masked; close() does
    not raise."""

    async def run(url: str) -> tuple[float, float, list[str]]:
        store = RedisPaceState(url, "test-fingerprint")
        started = time.monotonic()
        with pytest.raises(PaceStateUnavailable) as first:
            await store.reserve("requests", 0.1, 1)
        detected = time.monotonic() - started
        messages = [str(first.value)]
        started = time.monotonic()
        for call in (store.reserve("tokens", 0.1, 5), store.pause(1.0), store.learned_limits(),
                     store.learn_limits(ProviderLimits(600))):  # fmt: skip
            with pytest.raises(PaceStateUnavailable) as later:
                await call
            messages.append(str(later.value))
        refused_in = time.monotonic() - started
        await store.close()
        return detected, refused_in, messages

    with silent_listener() as port:
        detected, refused_in, messages = asyncio.run(run(f"redis://:{PASSWORD}@127.0.0.1:{port}/0"))
    assert detected < DETECTED_WITHIN_SECONDS
    assert refused_in < 0.1, "the breaker let a call wait for the store again"
    assert all(f"the shared pace's Redis at redis://:***@127.0.0.1:{port}/0 stopped answering" in m for m in messages)
    assert not any(PASSWORD in m for m in messages)


def test_bookkeeping_after_an_answer_survives_a_lost_store_and_the_next_request_is_held_back():
    """Guarantee: what follows an answer (the limits it announces, a 429's pause, a failure, the token
    correction, the learned limits read at the end) never raises on a lost store, so an answer
    already paid for is kept; the next acquire, before anything is sent, raises
    PaceStateUnavailable."""
    announced = {"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "0",
                 "x-ratelimit-reset-requests": "100ms", "x-ratelimit-limit-tokens": "100000"}  # fmt: skip

    async def run(url: str) -> ProviderLimits:
        pacer = Pacer(RedisPaceState(url, "test-fingerprint"), ProviderLimits(), lambda message: None)
        await pacer.answered(announced)
        await pacer.rate_limited({"retry-after-ms": "10"})
        await pacer.failed()
        await pacer.settle(100, 250)
        learned = await pacer.learned_limits()
        with pytest.raises(PaceStateUnavailable):
            await pacer.acquire(100, may_wait=60)
        await pacer.close()
        return learned

    port = free_port()  # nothing listens: connection refused
    assert asyncio.run(run(f"redis://127.0.0.1:{port}/0")) == ProviderLimits()


def test_a_password_in_the_stores_url_query_is_never_shown():
    """redis-py also takes ?password=: a message naming the store shows neither form."""
    from batch_pipeline.rate_limits.pace_state import redacted

    assert redacted("redis://cache:6379/0?password=hunter2&db=1") == "redis://cache:6379/0"
    assert redacted("redis://:hunter2@cache:6379/0") == "redis://:***@cache:6379/0"
