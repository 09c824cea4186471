"""AdaptivePace: the requests-per-minute pace for a provider that announces no limit, found from
its 429s by additive increase and multiplicative decrease (AIMD)."""

import collections
import time

DECREASE_FACTOR = 0.7
DECREASE_AT_MOST_EVERY_SECONDS = 2.0  # the 429s of one overshoot are one signal, not many
INCREASE_PER_ANSWER = 0.01  # × the pace set at the last decrease, per answer
MIN_RPM = 6.0
RECENT_SECONDS = 5.0


class AdaptivePace:
    def __init__(self, remembered_rpm: float | None = None):
        self.rpm: float | None = None  # None: no 429 yet, no pace
        self.estimating = False  # after a first 429, until what got through is known
        self._step = 0.0
        self._last_decrease = 0.0
        self._answers: collections.deque[float] = collections.deque()
        self._started = time.monotonic()
        if remembered_rpm:
            self._set(remembered_rpm)

    def answered(self) -> None:
        now = time.monotonic()
        self._answers.append(now)
        while self._answers[0] < now - RECENT_SECONDS:
            self._answers.popleft()
        if self.rpm is not None:
            self.rpm += self._step

    def rate_limited(self) -> bool:
        """A 429: True when the pace dropped. A first 429 starts estimating instead: what got
        through is known once the requests in flight have their answers (then call estimate)."""
        now = time.monotonic()
        if self.estimating or now - self._last_decrease < DECREASE_AT_MOST_EVERY_SECONDS:
            return False
        self._last_decrease = now
        if self.rpm is None:
            self.estimating = True
            return False
        self._set(self.rpm * DECREASE_FACTOR)
        return True

    def estimate(self) -> None:
        """The first pace: what got through before the first 429, over at least a second."""
        now = time.monotonic()
        window = min(RECENT_SECONDS, max(now - self._started, 1.0))
        recent = sum(1 for t in self._answers if t >= now - window)
        self._set(recent / window * 60 * DECREASE_FACTOR)
        self.estimating = False

    def _set(self, rpm: float) -> None:
        self.rpm = max(MIN_RPM, rpm)
        self._step = self.rpm * INCREASE_PER_ANSWER
