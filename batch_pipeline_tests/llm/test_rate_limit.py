import asyncio
import time

import pytest

from batch_pipeline.llm.rate_limit import RateGate, parse_duration, retry_after_seconds


@pytest.mark.parametrize("value, seconds", [("1s", 1), ("6m0s", 360), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("", None)])
def test_parse_duration(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "headers, seconds",
    [
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "3"}, 3.0),
        ({"x-ratelimit-reset-requests": "2s", "x-ratelimit-reset-tokens": "6m0s"}, 360.0),
        ({}, None),
    ],
)
def test_retry_after_seconds(headers, seconds):
    assert retry_after_seconds(headers) == seconds


def test_request_rate_never_exceeds_the_limit():
    async def run() -> list[float]:
        gate = RateGate(requests_per_minute=1200, tokens_per_minute=None)
        stamps = []

        async def one():
            await gate.acquire(0)
            stamps.append(time.monotonic())

        await asyncio.gather(*(one() for _ in range(30)))
        return sorted(stamps)

    stamps = asyncio.run(run())
    rate_per_minute = (len(stamps) - 1) / (stamps[-1] - stamps[0]) * 60
    assert 1000 <= rate_per_minute <= 1200


def test_a_pause_holds_back_every_request():
    async def run() -> float:
        gate = RateGate(None, None)
        gate.pause(0.3)
        started = time.monotonic()
        await asyncio.gather(*(gate.acquire(10) for _ in range(5)))
        return time.monotonic() - started

    assert asyncio.run(run()) >= 0.29


def test_token_limit_spaces_out_large_requests():
    async def run() -> float:
        gate = RateGate(None, tokens_per_minute=6000)  # a 10 s bucket holds 1000 tokens
        started = time.monotonic()
        for _ in range(3):
            await gate.acquire(500)
        return time.monotonic() - started

    assert 4.0 <= asyncio.run(run()) <= 6.5  # 1000 tokens pass at once, the next 500 take 5 s
