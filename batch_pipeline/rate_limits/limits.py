"""A provider's rate limits: as configured, as its answers announce them (``x-ratelimit-*``), and
the waits its 429s ask for."""

import re
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal

DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|µs|us|ns|s|m|h)")  # Go's durations, as OpenAI's headers
DURATION_UNITS = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 0.001, "s": 1, "m": 60, "h": 3600}
# A limit counted per minute and refilled evenly is whole again `used / limit` of a minute after
# `used` units went out, whatever its size: a reset longer than that says the window is longer.
# Twice a minute leaves room for rounding (a whole number remaining, a reset in ms); a daily limit
# (Groq's requests) shows a window of about 86,400 s.
LONGEST_MINUTE_WINDOW_SECONDS = 120.0

# "none": the provider's answers announce no limit (and it has not answered 429 yet).
LimitSource = Literal["configured", "headers", "429s", "none"]


def parse_duration(value: str) -> float | None:
    """Seconds in an ``x-ratelimit-reset-*`` value such as ``1s``, ``6m0s`` or ``20ms``."""
    parts = DURATION_PART_RE.findall(value or "")
    if not parts:
        return None
    return sum(float(number) * DURATION_UNITS[unit] for number, unit in parts)


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def retry_after_seconds(headers) -> float | None:
    """The wait a rate-limited response asks for: retry-after-ms, retry-after, or x-ratelimit-reset-*."""
    if (ms := _number(headers.get("retry-after-ms"))) is not None:
        return ms / 1000
    if (value := headers.get("retry-after")) is not None:
        if (seconds := _number(value)) is not None:
            return seconds
        try:
            return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            pass
    resets = [parse_duration(headers.get(h, "")) for h in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")]
    resets = [r for r in resets if r is not None]
    return max(resets) if resets else None


def exhausted_for_seconds(headers) -> float | None:
    """When an answer says a limit is used up (``x-ratelimit-remaining-* == 0``), the seconds until it resets."""
    waits = [
        parse_duration(headers.get(f"x-ratelimit-reset-{kind}", "")) or 0.0
        for kind in ("requests", "tokens")
        if _number(headers.get(f"x-ratelimit-remaining-{kind}")) == 0
    ]
    return max(waits) if waits else None


def window_seconds(headers, kind: str) -> float | None:
    """The window the announced x-ratelimit-limit-{kind} is counted over, as far as its reset header
    tells: None when it cannot (no reset header, or nothing used and a reset within a minute)."""
    limit = _number(headers.get(f"x-ratelimit-limit-{kind}"))
    remaining = _number(headers.get(f"x-ratelimit-remaining-{kind}"))
    reset = parse_duration(headers.get(f"x-ratelimit-reset-{kind}", ""))
    if not limit or reset is None:
        return None
    used = limit - remaining if remaining is not None else 0
    if used > 0:
        return reset * limit / used
    return reset if reset > LONGEST_MINUTE_WINDOW_SECONDS else None


def per_minute_limit(headers, kind: str) -> float | None:
    """The announced limit, when its reset header shows a minute window; else None (unknown)."""
    window = window_seconds(headers, kind)
    if window is None or window > LONGEST_MINUTE_WINDOW_SECONDS:
        return None
    return _number(headers.get(f"x-ratelimit-limit-{kind}"))


@dataclass(frozen=True)
class ProviderLimits:
    """Requests and tokens per minute of one provider, model and key; None: no limit known."""

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    source: LimitSource = "configured"

    @classmethod
    def from_headers(cls, headers) -> "ProviderLimits":
        """The per-minute limits an answer announces (x-ratelimit-*): each only when its reset header
        shows a minute window, as OpenAI's do. Groq's requests limit is per day: not a pace."""
        return cls(per_minute_limit(headers, "requests"), per_minute_limit(headers, "tokens"), "headers")

    def __bool__(self) -> bool:
        return bool(self.requests_per_minute or self.tokens_per_minute)

    def over(self, fallback: "ProviderLimits") -> "ProviderLimits":
        """These limits, each one not set here taken from fallback."""
        if self.requests_per_minute and self.tokens_per_minute:
            return self
        return ProviderLimits(
            self.requests_per_minute or fallback.requests_per_minute,
            self.tokens_per_minute or fallback.tokens_per_minute,
            self.source if self else fallback.source,
        )

    def describe(self) -> str:
        parts = [f"{self.requests_per_minute:.0f} requests/min" if self.requests_per_minute else None,
                 f"{self.tokens_per_minute:.0f} tokens/min" if self.tokens_per_minute else None]  # fmt: skip
        return ", ".join(p for p in parts if p) or "none"

    def to_stored(self) -> dict[str, str]:
        stored = {"source": self.source}
        if self.requests_per_minute:
            stored["requests_per_minute"] = repr(self.requests_per_minute)
        if self.tokens_per_minute:
            stored["tokens_per_minute"] = repr(self.tokens_per_minute)
        return stored if self or self.source == "none" else {}

    @classmethod
    def from_stored(cls, stored: dict[str, str]) -> "ProviderLimits":
        return cls(
            _number(stored.get("requests_per_minute")),
            _number(stored.get("tokens_per_minute")),
            stored.get("source", "headers"),
        )
