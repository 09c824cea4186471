import pytest

from batch_pipeline.rate_limits.limits import ProviderLimits, exhausted_for_seconds, parse_duration, retry_after_seconds


@pytest.mark.parametrize("value, seconds", [("1s", 1), ("6m0s", 360), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("", None)])
def test_parse_duration(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "headers, seconds",
    [
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),
        ({"x-ratelimit-reset-requests": "2s", "x-ratelimit-reset-tokens": "6m0s"}, 360.0),
        ({}, None),
    ],
)
def test_retry_after_seconds(headers, seconds):
    assert retry_after_seconds(headers) == seconds


def test_limits_announced_in_openai_headers():
    headers = {
        "x-ratelimit-limit-requests": "5000",
        "x-ratelimit-limit-tokens": "2000000",
        "x-ratelimit-remaining-requests": "4999",
        "x-ratelimit-remaining-tokens": "1999500",
        "x-ratelimit-reset-requests": "12ms",
        "x-ratelimit-reset-tokens": "15ms",
    }
    assert ProviderLimits.from_headers(headers) == ProviderLimits(5000, 2_000_000, "headers")
    assert exhausted_for_seconds(headers) is None
    assert not ProviderLimits.from_headers({"x-request-id": "req_1"})


def test_a_used_up_limit_waits_for_its_reset():
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1.5s",
               "x-ratelimit-remaining-tokens": "900", "x-ratelimit-reset-tokens": "6m0s"}  # fmt: skip
    assert exhausted_for_seconds(headers) == 1.5


def test_configured_limits_win_and_learned_ones_fill_the_gaps():
    configured = ProviderLimits(requests_per_minute=100)
    learned = ProviderLimits(5000, 2_000_000, "headers")
    assert configured.over(learned) == ProviderLimits(100, 2_000_000, "configured")
    assert ProviderLimits().over(learned) == learned
    assert ProviderLimits.from_stored(learned.to_stored()) == learned
