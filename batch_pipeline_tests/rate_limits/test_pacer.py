"""Pacer over both stores: this process's, and the tests' own Redis database."""

import asyncio
import time

import pytest

from batch_pipeline.rate_limits.limits import ProviderLimits
from batch_pipeline.rate_limits.pace_state import LocalPaceState, RedisPaceState
from batch_pipeline.rate_limits.pacer import NoSlotInTime, Pacer

ANNOUNCED_600 = {"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "599",
                 "x-ratelimit-reset-requests": "100ms"}  # fmt: skip
FOREVER = 3600.0


@pytest.fixture(params=["local", "redis"])
def open_store(request):
    """A factory of stores sharing one pace: in-process, or in Redis (one store per event loop)."""
    if request.param == "local":
        shared = LocalPaceState()
        return lambda: shared
    url = request.getfixturevalue("redis_url")
    return lambda: RedisPaceState(url, "test-fingerprint")


def pacer_on(state, configured: ProviderLimits | None = None, log=None) -> Pacer:
    return Pacer(state, configured or ProviderLimits(), log or (lambda message: None))


async def stamps_of(pacer: Pacer, count: int, tokens: int = 0) -> list[float]:
    stamps = []

    async def one():
        await pacer.acquire(tokens, FOREVER)
        stamps.append(time.monotonic())

    await asyncio.gather(*(one() for _ in range(count)))
    return sorted(stamps)


def per_minute(stamps: list[float]) -> float:
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]) * 60


def test_requests_are_spaced_evenly_at_the_configured_limit(open_store):
    async def run():
        store = open_store()
        stamps = await stamps_of(pacer_on(store, ProviderLimits(1200)), 30)
        await store.close()
        return stamps

    stamps = asyncio.run(run())
    assert 1000 <= per_minute(stamps) <= 1200
    assert min(b - a for a, b in zip(stamps, stamps[1:], strict=False)) > 0.03  # no bursts: one per 50 ms


def test_a_429_holds_back_every_request_of_every_pacer_on_the_state(open_store):
    async def run() -> float:
        first, second = pacer_on(open_store(), ProviderLimits(6000)), pacer_on(open_store(), ProviderLimits(6000))
        await first.rate_limited({"retry-after-ms": "400"})
        started = time.monotonic()
        await asyncio.gather(*(b.acquire(0, FOREVER) for b in (first, second) for _ in range(3)))
        return time.monotonic() - started

    assert asyncio.run(run()) >= 0.39


def test_tokens_are_paced_and_an_overestimate_is_given_back(open_store):
    async def run() -> tuple[float, float]:
        tokens = pacer_on(open_store(), ProviderLimits(tokens_per_minute=60_000))  # 1,000 tokens a second
        started = time.monotonic()
        for _ in range(3):
            await tokens.acquire(500, FOREVER)
            await tokens.answered({})
        three = time.monotonic() - started
        await tokens.settle(500, 100)  # the last request used 100, not 500
        started = time.monotonic()
        await tokens.acquire(500, FOREVER)
        return three, time.monotonic() - started

    three, after_refund = asyncio.run(run())
    assert 0.9 <= three <= 1.3  # 500 at once, then 0.5 s per 500 tokens
    assert after_refund <= 0.3  # 0.1 s owed, not 0.5


def test_one_request_goes_alone_until_an_answer_announces_the_limit(open_store):
    logged = []

    async def run() -> list[float]:
        learning = pacer_on(open_store(), log=logged.append)
        await learning.acquire(0, FOREVER)  # the first goes at once
        waiting = asyncio.create_task(learning.acquire(0, FOREVER))
        await asyncio.sleep(0.2)
        assert not waiting.done(), "the second request waits for the first answer"
        await learning.answered(ANNOUNCED_600)
        await waiting
        return await stamps_of(learning, 11)

    stamps = asyncio.run(run())
    assert 500 <= per_minute(stamps) <= 600
    assert logged == ["rate limits: 600 requests/min (the provider announces 600 requests/min)"]


def test_limits_learned_by_one_run_pace_the_next_from_its_first_request(open_store):
    async def run() -> list[float]:
        await pacer_on(open_store()).answered(ANNOUNCED_600)
        return await stamps_of(pacer_on(open_store()), 6)

    stamps = asyncio.run(run())
    assert 500 <= per_minute(stamps) <= 600  # no lone first request, no burst


def test_a_configured_limit_wins_over_the_announced_one(open_store):
    async def run() -> list[float]:
        configured = pacer_on(open_store(), ProviderLimits(1200))
        await configured.answered(ANNOUNCED_600)
        return await stamps_of(configured, 11)

    assert 1000 <= per_minute(asyncio.run(run())) <= 1200


def test_without_announced_limits_429s_slow_down_and_time_speeds_up_again(open_store, monkeypatch):
    async def run() -> list[float]:
        adaptive = pacer_on(open_store())
        for _ in range(10):  # ten answers within the first second: about 600 a minute got through
            await adaptive.acquire(0, FOREVER)
            await adaptive.answered({})
        await adaptive.rate_limited({"retry-after-ms": "1"})
        after_429 = adaptive.limits().requests_per_minute
        await adaptive.rate_limited({"retry-after-ms": "1"})  # the same overshoot: no second decrease
        assert adaptive.limits().requests_per_minute == pytest.approx(after_429, rel=1e-3)
        for _ in range(20):
            await adaptive.answered({})
        after_answers = adaptive.limits()
        await asyncio.sleep(1.0)
        return after_429, after_answers, adaptive.limits()

    after_429, after_answers, a_second_later = asyncio.run(run())
    assert 300 <= after_429 <= 450 and after_answers.source == "429s"
    assert after_answers.requests_per_minute == pytest.approx(after_429, rel=1e-3)  # answers alone: no growth
    assert a_second_later.requests_per_minute == pytest.approx(after_429 * 1.01, rel=2e-3)  # +1 % of it a second


def test_a_slot_too_far_away_fails_fast_and_reserves_nothing(open_store):
    async def run() -> float:
        slow = pacer_on(open_store(), ProviderLimits(60))  # one a second
        await slow.acquire(0, FOREVER)
        with pytest.raises(NoSlotInTime, match="no slot for 1 s"):
            await slow.acquire(0, may_wait=0.5)
        started = time.monotonic()
        await slow.acquire(0, FOREVER)
        return time.monotonic() - started

    assert asyncio.run(run()) <= 1.1  # the refused request's slot was given back


def test_a_scout_without_an_answer_hands_scouting_to_one_other_request(open_store):
    async def run():
        learning = pacer_on(open_store())
        await learning.acquire(0, FOREVER)
        waiting = [asyncio.create_task(learning.acquire(0, FOREVER)) for _ in range(3)]
        await asyncio.sleep(0.1)
        assert not any(task.done() for task in waiting)
        await learning.failed()  # a timeout: still nothing known about the limit
        await asyncio.sleep(0.1)
        assert sum(task.done() for task in waiting) == 1  # one new scout, not a blind burst
        await learning.answered(ANNOUNCED_600)
        await asyncio.gather(*waiting)

    asyncio.run(run())


def test_a_provider_that_announces_nothing_is_not_scouted_again(open_store):
    async def run() -> float:
        first = pacer_on(open_store())
        await first.acquire(0, FOREVER)
        await first.answered({"x-request-id": "req_1"})  # no limits announced
        later = pacer_on(open_store())
        started = time.monotonic()
        await asyncio.gather(*(later.acquire(0, FOREVER) for _ in range(20)))  # no answer needed
        return time.monotonic() - started

    assert asyncio.run(run()) < 0.5
