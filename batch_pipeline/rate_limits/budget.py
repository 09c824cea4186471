"""RateBudget: paces one analyser's requests to its provider's limit, drawing on the budget that
every run, step and process using the same provider, model and key shares (budget_store).

Which limit: configured values win; else what the provider's answers announce (x-ratelimit-*),
remembered in the store for later steps and runs; else, for servers that announce nothing,
additive increase / multiplicative decrease on their 429s. Until the first answer shows which
of these applies, one request goes out alone, so a run neither starts slow nor in a 429 storm.
"""

import asyncio
import contextlib
from collections.abc import Callable

from batch_pipeline.rate_limits.adaptive import AdaptivePace
from batch_pipeline.rate_limits.limits import ProviderLimits, exhausted_for_seconds, retry_after_seconds
from batch_pipeline.rate_limits.store import BudgetStore

RATE_LIMIT_FALLBACK_PAUSE_SECONDS = 1.0
PACE_STEP = 1.1  # waiting requests re-take their slots once the pace has grown by this much
HORIZON_SECONDS = 1.0  # how far ahead a request may take its slot
# Slots are spaced for 99 % of a limit: timer jitter and network delays bunch requests up a little,
# and a provider counting exactly would answer the bunched ones 429.
HEADROOM = 0.99


class NoSlotInTime(Exception):
    """The limit (or a provider's pause) leaves this request no slot within the time it may wait."""

    def __init__(self, wait: float, may_wait: float):
        super().__init__(
            f"the provider's rate limit leaves no slot for {wait:.0f} s, longer than the {may_wait:.0f} s "
            f"left of rate_limit_wait_seconds"
        )


class RateBudget:
    def __init__(self, store: BudgetStore, configured: ProviderLimits, log: Callable[[str], None]):
        self.store = store
        self.configured = configured
        self._log = log
        self._learned = ProviderLimits()
        self._adaptive = AdaptivePace()
        self._paced_rpm: float | None = None
        self._load_lock = asyncio.Lock()
        self._loaded = False
        self._first_answer = asyncio.Event()  # set once an answer (or a known limit) shows the pace
        self._scout_sent = False
        self._scout_back = asyncio.Event()
        # Bumped whenever the pace changes (a pause, a new limit): waiting requests take new slots.
        self._generation = 0
        self._pace_changed = asyncio.Event()
        self._taking = asyncio.Lock()
        self._sent = 0
        self._resolved = 0
        self._estimate_when_resolved: int | None = None  # after a first 429: once these have answers
        self._estimated = asyncio.Event()  # replaced while estimating: nothing more goes out until set
        self.pauses = 0

    def limits(self) -> ProviderLimits:
        limits = self.configured.over(self._learned)
        if not limits.requests_per_minute and self._adaptive.rpm:
            return ProviderLimits(self._adaptive.rpm, limits.tokens_per_minute, "429s")
        return limits

    @property
    def limits_tokens(self) -> bool:
        """Whether token estimates matter (they cost CPU): only under a tokens-per-minute limit."""
        return bool(self.limits().tokens_per_minute)

    @property
    def _requests_limit_unknown(self) -> bool:
        """Neither configured nor announced: the pace comes from 429s (AIMD)."""
        return not (self.configured.requests_per_minute or self._learned.requests_per_minute)

    async def _load(self) -> None:
        async with self._load_lock:
            if self._loaded:
                return
            remembered = await self.store.learned_limits()
            if remembered.source == "429s":
                self._adaptive = AdaptivePace(remembered.requests_per_minute)
            elif remembered:
                self._learned = remembered
            if self.limits().requests_per_minute or remembered.source == "none":
                self._found_pace()
            self._loaded = True

    async def acquire(self, estimated_tokens: int, may_wait: float) -> None:
        """Wait for this request's slot under the requests and tokens limits (and any pause); raise
        NoSlotInTime, reserving nothing, when that slot is more than may_wait seconds away."""
        if not self._loaded:
            await self._load()
        scout = False
        while not self._first_answer.is_set() and not scout:
            if self._scout_sent:
                scout_back = self._scout_back
                await scout_back.wait()
            else:
                self._scout_sent = scout = True
        try:
            await self._take_slot(estimated_tokens, may_wait)
        except BaseException:
            if scout:  # it never went out: another request scouts
                self._next_scout()
            raise

    def _next_scout(self) -> None:
        self._scout_sent = False
        self._scout_back.set()
        self._scout_back = asyncio.Event()

    async def _take_slot(self, estimated_tokens: int, may_wait: float) -> None:
        # One request at a time takes its slot, and none more than HORIZON_SECONDS ahead: slots
        # taken far ahead would keep an old pace after a pause or a new limit.
        while True:
            if self._estimate_when_resolved is not None:
                await self._estimated.wait()
            async with self._taking:
                wait = await self._reserve_within_horizon(estimated_tokens, may_wait)
                generation, pace_changed = self._generation, self._pace_changed
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(pace_changed.wait(), wait)
            if generation == self._generation:
                self._sent += 1
                return
            # The pace changed (a pause, a new limit) while this request waited: its slot is stale.

    async def _reserve_within_horizon(self, estimated_tokens: int, may_wait: float) -> float:
        while True:
            generation, pace_changed = self._generation, self._pace_changed
            limits = self.limits()
            rpm, tpm = limits.requests_per_minute, limits.tokens_per_minute
            tokens = min(estimated_tokens, tpm) if tpm else 0
            # Reserved even without a requests limit: the reservation also waits out a shared pause.
            wait = await self._reserve(rpm, tpm, tokens)
            if wait > may_wait:
                await self._reserve(rpm, tpm, tokens, give_back=True)
                raise NoSlotInTime(wait, may_wait)
            if wait <= HORIZON_SECONDS:
                return wait
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pace_changed.wait(), wait - HORIZON_SECONDS)
            if generation == self._generation:
                return HORIZON_SECONDS
            # The pace changed: this far-off slot is stale; one wasted slot is the price.

    async def _reserve(self, rpm: float | None, tpm: float | None, tokens: int, give_back: bool = False) -> float:
        sign = -1 if give_back else 1
        wait = await self.store.reserve("requests", _seconds_per_unit(rpm), sign)
        if tokens:
            wait = max(wait, await self.store.reserve("tokens", _seconds_per_unit(tpm), sign * tokens))
        return wait

    def _new_pace(self) -> None:
        self._generation += 1
        self._paced_rpm = self.limits().requests_per_minute
        self._pace_changed.set()
        self._pace_changed = asyncio.Event()

    async def settle(self, estimated_tokens: int, actual_tokens: int) -> None:
        """Charge (or give back) the difference between the estimate and what the server counted."""
        tpm = self.limits().tokens_per_minute
        if tpm and actual_tokens != estimated_tokens:
            await self.store.reserve("tokens", _seconds_per_unit(tpm), actual_tokens - estimated_tokens)

    async def answered(self, headers) -> None:
        """Every answer: learn the limits it announces, and pause when one is used up."""
        await self._learn(headers)
        if (wait := exhausted_for_seconds(headers)) is not None:
            await self._pause(wait)
        if self._requests_limit_unknown:
            self._adaptive.answered()
            if self._adaptive.rpm and self._adaptive.rpm > PACE_STEP * (self._paced_rpm or 0):
                self._new_pace()
        if not self._first_answer.is_set() and not self.limits():
            # The first answer announces nothing: later steps and runs need no lone first request.
            await self.store.learn_limits(ProviderLimits(source="none"))
        await self._resolved_one()

    async def rate_limited(self, headers) -> None:
        """A 429: everyone waits as long as it asks; without a known limit, the pace drops."""
        await self._learn(headers)
        wait = retry_after_seconds(headers) or RATE_LIMIT_FALLBACK_PAUSE_SECONDS
        await self._pause(wait)
        if self._requests_limit_unknown and self._adaptive.rate_limited():
            await self._paced_by_429s()
        elif self._adaptive.estimating and self._estimate_when_resolved is None:
            self._estimate_when_resolved = self._sent
            self._estimated = asyncio.Event()
        await self._resolved_one()

    async def failed(self, headers=None) -> None:
        """An attempt failed (timeout, connection, 5xx; headers if it had an answer): unless that
        shows the limits, the next request scouts (a burst now would be as blind as at the start)."""
        if headers is not None:
            await self._learn(headers)
        limit_known = bool(self.limits().requests_per_minute)
        if not self._first_answer.is_set() and not limit_known:
            self._next_scout()
        await self._resolved_one(answered=limit_known)

    def _found_pace(self) -> None:
        self._first_answer.set()
        self._scout_back.set()

    async def _resolved_one(self, answered: bool = True) -> None:
        self._resolved += 1
        if answered:
            self._found_pace()
        if self._estimate_when_resolved is not None and self._resolved >= self._estimate_when_resolved:
            self._estimate_when_resolved = None
            self._adaptive.estimate()
            await self._paced_by_429s()
            self._estimated.set()

    async def _learn(self, headers) -> None:
        announced = ProviderLimits.from_headers(headers)
        if not announced or announced == self._learned:
            return
        self._learned = announced
        await self.store.learn_limits(announced)
        self._new_pace()
        self._log(f"rate limits: {self.limits().describe()} (the provider announces {announced.describe()})")

    async def _pause(self, seconds: float) -> None:
        self.pauses += 1
        await self.store.pause(seconds)
        self._new_pace()

    async def _paced_by_429s(self) -> None:
        self._new_pace()
        await self.store.learn_limits(ProviderLimits(self._adaptive.rpm, None, "429s"))
        self._log(f"HTTP 429 from a provider that announces no limits: pacing at {self._adaptive.rpm:.0f} requests/min")


def _seconds_per_unit(per_minute: float | None) -> float:
    return 60 / (per_minute * HEADROOM) if per_minute else 0.0
