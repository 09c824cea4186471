"""The requests-per-minute pace for a provider whose requests limit is unknown, found from its 429s
by additive increase and multiplicative decrease (AIMD): an overshoot multiplies the pace by 0.7,
then it grows by 1 % of that pace per second (not per answer: a fast pace would climb back over the
overshoot within seconds). The pace lives in the pace state (SharedPace), so every process using
the same provider, model and key adapts one pace."""

import collections
from dataclasses import dataclass

from batch_pipeline.rate_limits import clock

DECREASE_FACTOR = 0.7
DECREASE_AT_MOST_EVERY_SECONDS = 2.0  # the 429s of one overshoot are one signal, not many
INCREASE_PER_SECOND = 0.01  # × the pace set at the last decrease
# After a long quiet the pace has grown far past anything tried: a decrease starts from at most twice
# the pace of the last overshoot, so one 429 brings it back near what the provider takes.
MOST_GROWTH_BEFORE_A_DECREASE = 2.0
MIN_RPM = 6.0
RECENT_SECONDS = 5.0


@dataclass(frozen=True)
class SharedPace:
    """The pace as the store holds it: the requests/min a 429 last overshot at, and how long ago."""

    overshoot_rpm: float
    age_seconds: float

    def rpm(self, later_seconds: float = 0.0) -> float:
        """The pace later_seconds after this was read."""
        decreased = max(MIN_RPM, self.overshoot_rpm * DECREASE_FACTOR)
        return decreased * (1 + INCREASE_PER_SECOND * (self.age_seconds + later_seconds))


def next_overshoot(previous: SharedPace | None, rpm: float) -> float | None:
    """The overshoot a 429 at rpm records; None when it belongs to the last one (the same overshoot)."""
    if previous is None:
        return rpm
    if previous.age_seconds < DECREASE_AT_MOST_EVERY_SECONDS:
        return None
    return min(rpm, MOST_GROWTH_BEFORE_A_DECREASE * previous.overshoot_rpm)


class RecentAnswers:
    """What got through lately in this process: the first pace, before any is known."""

    def __init__(self):
        self._answers: collections.deque[float] = collections.deque()
        self._started = clock.now()

    def answered(self) -> None:
        now = clock.now()
        self._answers.append(now)
        while self._answers[0] < now - RECENT_SECONDS:
            self._answers.popleft()

    def per_minute(self) -> float:
        """Answers per minute over the last RECENT_SECONDS (at least a second)."""
        now = clock.now()
        window = min(RECENT_SECONDS, max(now - self._started, 1.0))
        return sum(1 for t in self._answers if t >= now - window) / window * 60
