"""Pacer: paces one analyser's requests to its provider's limit, drawing on the pace that every
run, step and process using the same provider, model and key shares (pace_state).

Which limit: configured values win; else what the provider's answers announce per minute
(x-ratelimit-*, read by limits.per_minute_limit), remembered in the pace state for later steps and runs;
else additive increase / multiplicative decrease on its 429s (adaptive), one pace shared in the
pace state. A known requests limit is the pace: its 429s pause everyone as they ask, and do not lower it.
Until the first answer shows which of these applies, one request goes out alone, so a run neither
starts slow nor in a 429 storm.

A pace state (Redis) that stops answering (PaceStateUnavailable) fails acquire: nothing is sent unpaced.
What happens after a request (an answer's limits, a pause, a token correction) is bookkeeping: a lost
store then costs the pacing state, never the answer.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from batch_pipeline.rate_limits import clock
from batch_pipeline.rate_limits.adaptive import DECREASE_FACTOR, RecentAnswers, SharedPace
from batch_pipeline.rate_limits.limits import ProviderLimits, exhausted_for_seconds, retry_after_seconds
from batch_pipeline.rate_limits.pace_state import PaceState, PaceStateUnavailable

RATE_LIMIT_FALLBACK_PAUSE_SECONDS = 1.0
PACE_STEP = 1.1  # waiting requests re-take their slots once the pace has grown by this much
HORIZON_SECONDS = 1.0  # how far ahead a request may take its slot
PACE_REFRESH_SECONDS = 1.0  # how often the shared pace is read again (another process's 429 may lower it)
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


class Pacer:
    def __init__(self, state: PaceState, configured: ProviderLimits, log: Callable[[str], None]):
        self.state = state
        self.configured = configured
        self._log = log
        self._learned = ProviderLimits()
        self._recent = RecentAnswers()
        self._shared: SharedPace | None = None  # the pace 429s set, as last read from the pace state
        self._shared_read_at = 0.0
        self._next_read = 0.0  # of the shared pace (clock.now)
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

    @property
    def failure(self) -> str | None:
        """Why the pace state (Redis) stopped answering, once it has."""
        return self.state.failure

    async def close(self) -> None:
        await self.state.close()

    def limits(self) -> ProviderLimits:
        limits = self.configured.over(self._learned)
        if not limits.requests_per_minute and self._shared:
            rpm = self._shared.rpm(clock.now() - self._shared_read_at)
            return ProviderLimits(rpm, limits.tokens_per_minute, "429s")
        return limits

    async def learned_limits(self) -> ProviderLimits:
        """What the pace state holds for later steps and runs; nothing once it has stopped answering."""
        try:
            return await self.state.learned_limits()
        except PaceStateUnavailable:
            return ProviderLimits()

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
            remembered = await self.state.learned_limits()
            if remembered.source == "429s":
                self._learned = ProviderLimits(tokens_per_minute=remembered.tokens_per_minute, source="headers")
                await self._recall_pace(remembered.requests_per_minute)
            elif remembered:
                self._learned = remembered
            await self._refresh_pace(at_once=True)
            if self.limits().requests_per_minute or remembered.source == "none":
                self._found_pace()
            self._loaded = True

    async def acquire(self, estimated_tokens: int, may_wait: float) -> None:
        """Wait for this request's slot under the requests and tokens limits (and any pause); raise
        NoSlotInTime, reserving nothing, when that slot is more than may_wait seconds away."""
        if not self._loaded:
            await self._load()
        await self._refresh_pace()
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
        wait = await self.state.reserve("requests", _seconds_per_unit(rpm), sign)
        if tokens:
            wait = max(wait, await self.state.reserve("tokens", _seconds_per_unit(tpm), sign * tokens))
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
            await _bookkeeping(self.state.reserve("tokens", _seconds_per_unit(tpm), actual_tokens - estimated_tokens))

    async def answered(self, headers) -> None:
        """Every answer: learn the limits it announces, and pause when one is used up."""
        await self._learn(headers)
        if (wait := exhausted_for_seconds(headers)) is not None:
            await self._pause(wait)
        if self._requests_limit_unknown:
            self._recent.answered()
            self._follow_pace()
        if not self._first_answer.is_set() and not self.limits():
            # The first answer announces nothing: later steps and runs need no lone first request.
            await _bookkeeping(self.state.learn_limits(ProviderLimits(source="none")))
        await self._resolved_one()

    async def rate_limited(self, headers) -> None:
        """A 429: everyone waits as long as it asks; without a known requests limit, the shared pace
        drops, or, before there is one, is estimated once the requests in flight have their answers."""
        await self._learn(headers)
        wait = retry_after_seconds(headers) or RATE_LIMIT_FALLBACK_PAUSE_SECONDS
        await self._pause(wait)
        if self._requests_limit_unknown:
            await _bookkeeping(self._refresh_pace(at_once=True))
            if self._shared is not None:
                await self._overshot(self.limits().requests_per_minute)
            elif self._estimate_when_resolved is None:
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
            try:
                await self._overshot(self._recent.per_minute())  # what got through before the first 429
            finally:
                self._estimated.set()

    async def _learn(self, headers) -> None:
        announced = ProviderLimits.from_headers(headers)
        if not announced or announced.over(self._learned) == self._learned:
            return
        self._learned = announced.over(self._learned)
        await _bookkeeping(self.state.learn_limits(self._learned))
        self._new_pace()
        self._log(f"rate limits: {self.limits().describe()} (the provider announces {announced.describe()})")

    async def _pause(self, seconds: float) -> None:
        self.pauses += 1
        await _bookkeeping(self.state.pause(seconds))
        self._new_pace()

    async def _refresh_pace(self, at_once: bool = False) -> None:
        if not self._requests_limit_unknown:
            return
        if at_once or clock.now() >= self._next_read:
            self._next_read = clock.now() + PACE_REFRESH_SECONDS  # one reader at a time
            self._follow(await self.state.shared_pace())

    def _follow(self, shared: SharedPace | None) -> None:
        self._shared, self._shared_read_at = shared, clock.now()
        self._follow_pace()

    def _follow_pace(self) -> None:
        """Waiting requests re-take their slots once the pace dropped, or grew by PACE_STEP."""
        rpm, paced = self.limits().requests_per_minute, self._paced_rpm
        if rpm and (not paced or rpm < paced / PACE_STEP or rpm > paced * PACE_STEP):
            self._new_pace()

    async def _overshot(self, rpm: float) -> None:
        """A 429 at this pace: the shared pace drops, unless another 429 of the same overshoot did."""
        try:
            shared = await self.state.overshot(rpm)
        except PaceStateUnavailable:
            return  # bookkeeping: the next acquire reports the lost store
        self._follow(shared)
        if shared.age_seconds == 0:  # this 429 set it
            pace = self.limits()  # source "429s": later runs start from it (_recall_pace)
            await _bookkeeping(self.state.learn_limits(pace))
            self._log(
                f"HTTP 429 and no per-minute requests limit known: pacing at {pace.requests_per_minute:.0f} "
                "requests/min (one pace for every process using this provider, model and key)"
            )

    async def _recall_pace(self, rpm: float | None) -> None:
        """A pace an earlier process found (remembered with the learned limits), unless the store has a live one."""
        if rpm and await self.state.shared_pace() is None:
            await self.state.overshot(rpm / DECREASE_FACTOR)  # the overshoot that the remembered pace followed


async def _bookkeeping(write: Awaitable[object]) -> None:
    """A write after a request: a lost store (the next acquire reports it) must not lose the answer."""
    with contextlib.suppress(PaceStateUnavailable):
        await write


def _seconds_per_unit(per_minute: float | None) -> float:
    return 60 / (per_minute * HEADROOM) if per_minute else 0.0
