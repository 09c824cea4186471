"""Pacer over both pace states: this process's, on an event loop whose time is faked (looptime: the
waits cost no real time), and the tests' own Redis database, on a real loop (Redis keeps the time)."""

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass

import looptime
import pytest

from batch_pipeline.rate_limits import clock
from batch_pipeline.rate_limits.limits import ProviderLimits
from batch_pipeline.rate_limits.pace_state import LocalPaceState, RedisPaceState
from batch_pipeline.rate_limits.pacer import NoSlotInTime, Pacer

ANNOUNCED_600 = {"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "599",
                 "x-ratelimit-reset-requests": "100ms"}  # fmt: skip
FOREVER = 3600.0


@dataclass
class PaceStates:
    open: Callable[[], object]  # a pace state; all share one pace
    run: Callable[[Coroutine], object]  # runs a test's coroutine on the loop that suits the state


def on_fake_time(coroutine: Coroutine):
    with asyncio.Runner(loop_factory=lambda: looptime.new_event_loop(start=0.0)) as runner:
        return runner.run(coroutine)


@pytest.fixture(params=["local", "redis"])
def states(request) -> PaceStates:
    """Pace states sharing one pace: in-process (on fake time), or in Redis (one per event loop)."""
    if request.param == "local":
        shared = LocalPaceState()
        return PaceStates(lambda: shared, on_fake_time)
    url = request.getfixturevalue("redis_url")
    return PaceStates(lambda: RedisPaceState(url, "test-fingerprint"), asyncio.run)


def pacer_on(state, configured: ProviderLimits | None = None, log=None) -> Pacer:
    return Pacer(state, configured or ProviderLimits(), log or (lambda message: None))


async def stamps_of(pacer: Pacer, count: int, tokens: int = 0) -> list[float]:
    stamps = []

    async def one():
        await pacer.acquire(tokens, FOREVER)
        stamps.append(clock.now())

    await asyncio.gather(*(one() for _ in range(count)))
    return sorted(stamps)


def per_minute(stamps: list[float]) -> float:
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]) * 60


def test_requests_are_spaced_evenly_at_the_configured_limit(states):
    async def run():
        store = states.open()
        stamps = await stamps_of(pacer_on(store, ProviderLimits(1200)), 30)
        await store.close()
        return stamps

    stamps = states.run(run())
    assert 1000 <= per_minute(stamps) <= 1200
    assert min(b - a for a, b in zip(stamps, stamps[1:], strict=False)) > 0.03  # no bursts: one per 50 ms


def test_a_429_holds_back_every_request_of_every_pacer_on_the_state(states):
    async def run() -> float:
        first, second = pacer_on(states.open(), ProviderLimits(6000)), pacer_on(states.open(), ProviderLimits(6000))
        await first.rate_limited({"retry-after-ms": "400"})
        started = clock.now()
        await asyncio.gather(*(b.acquire(0, FOREVER) for b in (first, second) for _ in range(3)))
        return clock.now() - started

    assert states.run(run()) >= 0.39


def test_tokens_are_paced_and_an_overestimate_is_given_back(states):
    async def run() -> tuple[float, float]:
        tokens = pacer_on(states.open(), ProviderLimits(tokens_per_minute=60_000))  # 1,000 tokens a second
        started = clock.now()
        for _ in range(3):
            await tokens.acquire(500, FOREVER)
            await tokens.answered({})
        three = clock.now() - started
        await tokens.settle(500, 100)  # the last request used 100, not 500
        started = clock.now()
        await tokens.acquire(500, FOREVER)
        return three, clock.now() - started

    three, after_refund = states.run(run())
    assert 0.9 <= three <= 1.3  # 500 at once, then 0.5 s per 500 tokens
    assert after_refund <= 0.3  # 0.1 s owed, not 0.5


def test_one_request_goes_alone_until_an_answer_announces_the_limit(states):
    logged = []

    async def run() -> list[float]:
        learning = pacer_on(states.open(), log=logged.append)
        await learning.acquire(0, FOREVER)  # the first goes at once
        waiting = asyncio.create_task(learning.acquire(0, FOREVER))
        await asyncio.sleep(0.2)
        assert not waiting.done(), "the second request waits for the first answer"
        await learning.answered(ANNOUNCED_600)
        await waiting
        return await stamps_of(learning, 11)

    stamps = states.run(run())
    assert 500 <= per_minute(stamps) <= 600
    assert logged == ["rate limits: 600 requests/min (the provider announces 600 requests/min)"]


def test_limits_learned_by_one_run_pace_the_next_from_its_first_request(states):
    async def run() -> list[float]:
        await pacer_on(states.open()).answered(ANNOUNCED_600)
        return await stamps_of(pacer_on(states.open()), 6)

    stamps = states.run(run())
    assert 500 <= per_minute(stamps) <= 600  # no lone first request, no burst


def test_a_configured_limit_wins_over_the_announced_one(states):
    async def run() -> list[float]:
        configured = pacer_on(states.open(), ProviderLimits(1200))
        await configured.answered(ANNOUNCED_600)
        return await stamps_of(configured, 11)

    assert 1000 <= per_minute(states.run(run())) <= 1200


def test_without_announced_limits_429s_slow_down_and_time_speeds_up_again(states, monkeypatch):
    async def run() -> list[float]:
        adaptive = pacer_on(states.open())
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

    after_429, after_answers, a_second_later = states.run(run())
    assert 300 <= after_429 <= 450 and after_answers.source == "429s"
    assert after_answers.requests_per_minute == pytest.approx(after_429, rel=1e-3)  # answers alone: no growth
    assert a_second_later.requests_per_minute == pytest.approx(after_429 * 1.01, rel=2e-3)  # +1 % of it a second


def test_a_slot_too_far_away_fails_fast_and_reserves_nothing(states):
    async def run() -> float:
        slow = pacer_on(states.open(), ProviderLimits(60))  # one a second
        await slow.acquire(0, FOREVER)
        with pytest.raises(NoSlotInTime, match="no slot for 1 s"):
            await slow.acquire(0, may_wait=0.5)
        started = clock.now()
        await slow.acquire(0, FOREVER)
        return clock.now() - started

    assert states.run(run()) <= 1.1  # the refused request's slot was given back


def test_a_scout_without_an_answer_hands_scouting_to_one_other_request(states):
    async def run():
        learning = pacer_on(states.open())
        await learning.acquire(0, FOREVER)
        waiting = [asyncio.create_task(learning.acquire(0, FOREVER)) for _ in range(3)]
        await asyncio.sleep(0.1)
        assert not any(task.done() for task in waiting)
        await learning.failed()  # a timeout: still nothing known about the limit
        await asyncio.sleep(0.1)
        assert sum(task.done() for task in waiting) == 1  # one new scout, not a blind burst
        await learning.answered(ANNOUNCED_600)
        await asyncio.gather(*waiting)

    states.run(run())


def test_a_provider_that_announces_nothing_is_not_scouted_again(states):
    async def run() -> float:
        first = pacer_on(states.open())
        await first.acquire(0, FOREVER)
        await first.answered({"x-request-id": "req_1"})  # no limits announced
        later = pacer_on(states.open())
        started = clock.now()
        await asyncio.gather(*(later.acquire(0, FOREVER) for _ in range(20)))  # no answer needed
        return clock.now() - started

    assert states.run(run()) < 0.5
