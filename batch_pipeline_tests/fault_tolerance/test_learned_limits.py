"""Learned limits read for what they are: a provider's x-ratelimit-limit-* is a per-minute pace only
when its reset header shows a minute window (OpenAI's do; Groq's requests limit is per day); while the
requests limit is unknown the pace follows 429s (AIMD), grows back per second rather than per answer,
and is one pace in the pace state for every process."""

import asyncio
import concurrent.futures
import multiprocessing
import time
import uuid

import pytest

from batch_pipeline.rate_limits.adaptive import SharedPace, next_overshoot
from batch_pipeline.rate_limits.limits import ProviderLimits
from batch_pipeline.rate_limits.pace_state import LocalPaceState, RedisPaceState
from batch_pipeline.rate_limits.pacer import Pacer

FOREVER = 3600.0
OPENAI = {"x-ratelimit-limit-requests": "5000", "x-ratelimit-remaining-requests": "4999",
          "x-ratelimit-reset-requests": "12ms", "x-ratelimit-limit-tokens": "2000000",
          "x-ratelimit-remaining-tokens": "1999500", "x-ratelimit-reset-tokens": "15ms"}  # fmt: skip
# Groq: requests per day, tokens per minute (console.groq.com/docs/rate-limits).
GROQ = {"x-ratelimit-limit-requests": "14400", "x-ratelimit-remaining-requests": "14399",
        "x-ratelimit-reset-requests": "2h", "x-ratelimit-limit-tokens": "6000",
        "x-ratelimit-remaining-tokens": "5500", "x-ratelimit-reset-tokens": "5s"}  # fmt: skip


def pacer_on(state, configured: ProviderLimits | None = None) -> Pacer:
    return Pacer(state, configured or ProviderLimits(), lambda message: None)


async def overshoot_after_ten_answers(pacer: Pacer, headers: dict) -> float:
    """Ten answers at once, then a 429: the pace it sets."""
    for _ in range(10):
        await pacer.acquire(0, FOREVER)
        await pacer.answered(headers)
    await pacer.rate_limited({"retry-after-ms": "1"})
    return pacer.limits().requests_per_minute


@pytest.mark.parametrize(
    "reset_requests, remaining_requests",
    [("2h", "14399"), ("6s", "14399"), ("2m59.56s", "14370")],
    ids=["reset-2h", "one-used-6s", "groq-docs-example"],
)
def test_a_daily_requests_limit_is_not_a_per_minute_pace(reset_requests, remaining_requests):
    """Guarantee: Groq's x-ratelimit-limit-requests (14,400 a day) is never paced as 14,400 a minute,
    whether its reset is hours away or, early in the day, seconds (1 used of 14,400 → back in 6 s);
    its per-minute tokens limit is still learned."""
    headers = {
        **GROQ,
        "x-ratelimit-reset-requests": reset_requests,
        "x-ratelimit-remaining-requests": remaining_requests,
    }
    assert ProviderLimits.from_headers(headers) == ProviderLimits(None, 6000, "headers")


def test_openai_headers_are_a_per_minute_pace_and_a_limit_without_a_reset_is_unknown():
    """Guarantee: OpenAI's limits (reset within the minute, matching the use) are paced per minute; a
    limit whose window nothing shows (no reset header) is unknown, not assumed per minute."""
    assert ProviderLimits.from_headers(OPENAI) == ProviderLimits(5000, 2_000_000, "headers")
    assert ProviderLimits.from_headers({"x-ratelimit-limit-requests": "5000"}) == ProviderLimits(source="headers")
    assert not ProviderLimits.from_headers({"x-ratelimit-limit-requests": "5000"})


def test_with_a_daily_limit_announced_429s_still_set_the_pace():
    """Guarantee: AIMD stays on while the requests limit is unknown, even when the provider announces
    a (daily) requests limit: its 429s set the pace, under the tokens limit it announces per minute."""

    async def run() -> ProviderLimits:
        groq = pacer_on(LocalPaceState())
        await overshoot_after_ten_answers(groq, GROQ)
        return groq.limits()

    limits = asyncio.run(run())
    assert limits.source == "429s" and limits.requests_per_minute < 1000 and limits.tokens_per_minute == 6000


def test_a_known_limit_is_the_pace_and_its_429s_only_pause():
    """Guarantee (the choice once a limit is known): a configured or per-minute announced limit is the
    pace; a 429 pauses every request as long as it asks, and does not lower the pace."""

    async def run() -> tuple[ProviderLimits, ProviderLimits]:
        announced, configured = pacer_on(LocalPaceState()), pacer_on(LocalPaceState(), ProviderLimits(1200))
        for known in (announced, configured):
            await overshoot_after_ten_answers(known, OPENAI)
        return announced.limits(), configured.limits()

    announced, configured = asyncio.run(run())
    assert announced == ProviderLimits(5000, 2_000_000, "headers")
    assert configured == ProviderLimits(1200, 2_000_000, "configured")


def test_after_an_overshoot_the_pace_grows_per_second_not_per_answer():
    """Guarantee: the additive increase is 1 % of the decreased pace per second: a fast pace does not
    climb back over the overshoot within seconds because many answers arrive."""

    async def run() -> tuple[float, float, float, float, float]:
        adaptive = pacer_on(LocalPaceState())
        after_429 = await overshoot_after_ten_answers(adaptive, {})
        started = time.monotonic()
        for _ in range(300):  # at 3,000 a minute: six seconds' answers
            await adaptive.answered({})
        after_answers, answers_took = adaptive.limits().requests_per_minute, time.monotonic() - started
        await asyncio.sleep(1.5)
        return after_429, after_answers, answers_took, adaptive.limits().requests_per_minute, time.monotonic() - started

    after_429, after_answers, answers_took, later, later_took = asyncio.run(run())
    # Per answer, 300 answers would have added 300 %; per second, what the time they took allows.
    assert after_answers <= grown(after_429, answers_took + 0.2)
    assert grown(after_429, 1.5 - 0.2) <= later <= grown(after_429, later_took + 0.2)


def test_a_decrease_after_a_long_quiet_starts_near_the_last_overshoot():
    """Guarantee: a pace that grew unchecked for an hour (1 % a second: 37 times) is not the start of
    the next decrease: that starts from at most twice the last overshoot; 429s within 2 s of a
    decrease are the same overshoot."""
    quiet = SharedPace(overshoot_rpm=600, age_seconds=3600)
    assert next_overshoot(quiet, quiet.rpm()) == 1200
    assert next_overshoot(SharedPace(600, 1.0), 500) is None
    assert next_overshoot(None, 900) == 900


def grown(rpm: float, seconds: float) -> float:
    """A pace set at rpm, seconds later: +1 % of it a second."""
    return rpm * (1 + 0.01 * seconds)


def _pace_in_another_process(
    url: str, fingerprint: str, decrease_after: float
) -> tuple[ProviderLimits, float, float, float]:
    """A second process on the same Redis: the pace it finds, then the pace after its own 429 (with when)."""

    async def run() -> tuple[ProviderLimits, float, float, float]:
        store = RedisPaceState(url, fingerprint)
        other = pacer_on(store)
        await other.acquire(0, FOREVER)
        found, found_at = other.limits(), time.time()
        await asyncio.sleep(max(0.0, decrease_after - time.time()))
        await other.rate_limited({"retry-after-ms": "1"})
        after, after_at = other.limits().requests_per_minute, time.time()
        await store.close()
        return found, found_at, after, after_at

    return asyncio.run(run())


def test_two_processes_adapt_one_pace_in_redis(redis_url):
    """Guarantee: the adaptive pace lives in the pace state: a second process starts from the
    pace the first one's 429 set, and its own 429 (a later overshoot) lowers the pace of the first."""

    fingerprint = f"test-{uuid.uuid4().hex}"  # its own keys, whatever else uses the tests' database

    async def run() -> tuple[float, float, tuple, float, float]:
        store = RedisPaceState(redis_url, fingerprint)
        first = pacer_on(store)
        set_by_first, set_at = await overshoot_after_ten_answers(first, {}), time.time()
        decrease_after = set_at + 2.5  # past the 2 s in which 429s are one overshoot
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            other = await asyncio.wrap_future(
                pool.submit(_pace_in_another_process, redis_url, fingerprint, decrease_after)
            )
        await asyncio.sleep(1.1)  # the first process reads the shared pace again at least every second
        await first.acquire(0, FOREVER)
        seen_by_first, seen_at = first.limits().requests_per_minute, time.time()
        await store.close()
        return set_by_first, set_at, other, seen_by_first, seen_at

    set_by_first, set_at, (found, found_at, after_others, after_at), seen_by_first, seen_at = asyncio.run(run())
    assert found.source == "429s"
    assert found.requests_per_minute == pytest.approx(grown(set_by_first, found_at - set_at), rel=0.01)
    assert after_others == pytest.approx(0.7 * grown(set_by_first, after_at - set_at), rel=0.01)
    assert seen_by_first == pytest.approx(grown(after_others, seen_at - after_at), rel=0.01)
