"""RateGate: requests-per-minute and tokens-per-minute limits shared by every request of a client,
plus a shared pause that a 429 imposes on everyone, not only on the request that received it."""

import asyncio
import re
import time
from email.utils import parsedate_to_datetime

from aiolimiter import AsyncLimiter

TOKEN_WINDOW_SECONDS = 10  # token bucket window: wide enough for one large request to fit
DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def parse_duration(value: str) -> float | None:
    """Seconds in an ``x-ratelimit-reset-*`` value such as ``1s``, ``6m0s`` or ``20ms``."""
    parts = DURATION_PART_RE.findall(value or "")
    if not parts:
        return None
    return sum(float(number) * DURATION_UNITS[unit] for number, unit in parts)


def retry_after_seconds(headers) -> float | None:
    """The wait a rate-limited response asks for: retry-after-ms, retry-after, or x-ratelimit-reset-*."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    if (value := headers.get("retry-after")) is not None:
        try:
            return float(value)
        except ValueError:
            try:
                return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
            except (TypeError, ValueError):
                pass
    resets = [parse_duration(headers.get(h, "")) for h in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")]
    resets = [r for r in resets if r is not None]
    return max(resets) if resets else None


class RateGate:
    def __init__(self, requests_per_minute: int | None, tokens_per_minute: int | None):
        # One request per interval, no burst: the rate never exceeds the limit over any window.
        self._requests = AsyncLimiter(1, 60 / requests_per_minute) if requests_per_minute else None
        self._tokens = (
            AsyncLimiter(tokens_per_minute * TOKEN_WINDOW_SECONDS / 60, TOKEN_WINDOW_SECONDS)
            if tokens_per_minute
            else None
        )
        self._paused_until = 0.0
        self._settling: set[asyncio.Task] = set()
        self.pauses = 0

    def pause(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        if until > self._paused_until:
            self._paused_until = until
            self.pauses += 1

    async def _wait_for_pause(self) -> None:
        while (remaining := self._paused_until - time.monotonic()) > 0:
            await asyncio.sleep(remaining)

    async def _take_tokens(self, tokens: int) -> None:
        if self._tokens is not None and tokens > 0:
            await self._tokens.acquire(min(tokens, self._tokens.max_rate))

    async def acquire(self, estimated_tokens: int) -> None:
        await self._wait_for_pause()
        if self._requests is not None:
            await self._requests.acquire()
        await self._take_tokens(estimated_tokens)
        await self._wait_for_pause()

    def settle(self, estimated_tokens: int, actual_tokens: int) -> None:
        """Charge what the server reports beyond the estimate, in the background so the finished
        request is not held up; later requests wait for it (a bucket cannot give tokens back)."""
        if self._tokens is not None and actual_tokens > estimated_tokens:
            task = asyncio.create_task(self._take_tokens(actual_tokens - estimated_tokens))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)
