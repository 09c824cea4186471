"""Several processes, one provider limit: the pace in the tests' own Redis database, the provider
the loopback server (which counts every request it gets)."""

import asyncio
import concurrent.futures
import multiprocessing

import pytest
import redis

from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.context import ProcessingContext
from batch_pipeline.llm.options import LlmSettings
from batch_pipeline.llm.provider import LlmProvider
from batch_pipeline.llm.response_format import ResponseFormatMode
from batch_pipeline.llm.unavailable import LlmUnavailable
from testbed.fake_openai_server import Behaviour, FakeOpenAIServer

API_KEY = "sk-test-key"
PROCESSES = 3
DOCUMENTS_EACH = 30


def settings_for(base_url: str, rate_limit_url: str | None, requests_per_minute: int | None = None) -> LlmSettings:
    return LlmSettings(
        api_key=API_KEY, base_url=base_url, rate_limit_url=rate_limit_url, timeout_seconds=30,
        max_concurrent_requests=16, requests_per_minute=requests_per_minute, tokens_per_minute=None,
        max_attempts=5, rate_limit_wait_seconds=120, retry_max_wait_seconds=2, max_output_tokens=1024,
        max_repairs=2, response_format=ResponseFormatMode.json_schema, batch_poll_max_seconds=1,
        batch_resubmissions=2,
    )  # fmt: skip


def analyse_in_this_process(settings: LlmSettings, worker: int) -> list[str]:
    """One worker process: its documents through its own analyser, as an analysis step would."""
    context = ProcessingContext(model_key="content_compliance", ai_model="gpt-test").pinned(catalogue())

    async def run() -> list[str]:
        analyser = LlmProvider(settings).analyser(ResponseFormatMode.json_schema, "gpt-test", lambda message: None)
        slots = asyncio.Semaphore(settings.max_concurrent_requests)

        async def one(i: int) -> str:
            async with slots:
                text = f"# Worker {worker} note {i}\n\nWrite to w{worker}n{i}@example.com.\n"
                return (await analyser.analyse(text, context)).status

        try:
            return await asyncio.gather(*(one(i) for i in range(DOCUMENTS_EACH)))
        finally:
            await analyser.close()

    return asyncio.run(run())


def analyse_in_processes(settings: LlmSettings) -> list[str]:
    with concurrent.futures.ProcessPoolExecutor(PROCESSES, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = pool.map(analyse_in_this_process, [settings] * PROCESSES, range(PROCESSES))
        return [status for statuses in results for status in statuses]


def busiest(times: list[float], window: float) -> int:
    """The most requests the provider saw within any `window` seconds."""
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t < start + window) for i, start in enumerate(times))


def test_processes_sharing_a_configured_limit_never_exceed_it_together(redis_url):
    # Each process is told 600/min, the provider's limit. Without a shared pace they would send 1,800.
    with FakeOpenAIServer(Behaviour(rpm=600, latency=0.05)) as server:
        statuses = analyse_in_processes(settings_for(server.url, redis_url, requests_per_minute=600))
    assert statuses == ["ok"] * PROCESSES * DOCUMENTS_EACH
    assert not server.completions(status=429)
    # Slots 0.101 s apart (at 99 %): 10 a second over the run, and over any window, but for a few
    # requests sent late (a new connection, three processes and the server on two cores) arriving
    # together with the next ones; the mean is taken after each process's first request (its
    # connection set-up), within 2 % of jitter. Each process alone would send 10 a second: 30 together.
    times = sorted(r.at for r in server.requests)
    steady = times[PROCESSES:]
    assert (len(steady) - 1) / (steady[-1] - steady[0]) <= 10 * 1.02
    # Over any window: its slots, plus each process's first request arriving late with the next ones.
    assert busiest(times, 1.0) <= 10 + PROCESSES and busiest(times, 5.0) <= 50 + PROCESSES


def test_processes_learn_the_announced_limit_and_share_it(redis_url):
    with FakeOpenAIServer(Behaviour(rpm=600, latency=0.05, announce_limits=True)) as server:
        statuses = analyse_in_processes(settings_for(server.url, redis_url))
    assert statuses == ["ok"] * PROCESSES * DOCUMENTS_EACH
    assert len(server.completions(status=429)) <= 0.02 * len(server.requests)
    stored = redis.Redis.from_url(redis_url)
    keys = stored.keys("batch_pipeline:pace:*")
    limits = [k for k in keys if k.endswith(b":limits")]
    assert len(limits) == 1 and stored.hgetall(limits[0])[b"requests_per_minute"] == b"600.0"
    everything = b" ".join(keys + [stored.dump(k) or b"" for k in keys])
    assert API_KEY.encode() not in everything and b"sk-" not in everything  # a fingerprint, never the key
    stored.close()


def test_an_unreachable_pace_state_fails_before_anything_is_sent():
    with FakeOpenAIServer() as server:
        provider = LlmProvider(settings_for(server.url, "redis://:hunter2@127.0.0.1:1/0"))
        with pytest.raises(LlmUnavailable, match=r"shared pace's Redis at redis://:\*\*\*@127\.0\.0\.1:1/0") as failure:
            provider.check_serves("gpt-test")
    assert "hunter2" not in str(failure.value)
    assert server.requests == []
