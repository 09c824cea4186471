"""Where a provider's pace lives: in this process, or in Redis for every process that uses
the same provider, model and API key.

A pace is a GCRA schedule (the generic cell rate algorithm): for each of "requests" and
"tokens" one number, the theoretical arrival time (TAT) of the next unit. A request reserves its
units by moving the TAT on and waits until its own slot; so requests go out evenly spaced, with
no polling and no herd after a pause, and the rate can change with every call (limits learned
while the run goes). A pause is the TAT moved to the pause's end. Times are the Redis server's
clock in Redis, so processes on different hosts agree.

Chosen over `limits` and `pyrate-limiter`: both answer "allowed now?" only (callers poll and
surge together), keep the rate in the key or the bucket (a learned rate would start a fresh,
empty window) and cannot pause everyone or give back an overestimate.
"""

import contextlib
import hashlib
import threading
from typing import Protocol
from urllib.parse import parse_qs, urlsplit, urlunsplit

from batch_pipeline.rate_limits import clock
from batch_pipeline.rate_limits.adaptive import (
    DECREASE_AT_MOST_EVERY_SECONDS,
    MOST_GROWTH_BEFORE_A_DECREASE,
    SharedPace,
    next_overshoot,
)
from batch_pipeline.rate_limits.limits import ProviderLimits

KEY_PREFIX = "batch_pipeline:pace"
LEARNED_LIMITS_TTL_SECONDS = 24 * 3600
# Redis answers within milliseconds: a store silent this long is gone or frozen. One retry rides out
# a dropped connection (a restart, a fail-over); more would only delay the verdict.
STORE_TIMEOUT_SECONDS = 2.0
STORE_RETRIES = 1

# KEYS[1]: the TAT. ARGV[1]: seconds per unit, ARGV[2]: units (negative gives back), ARGV[3]: pause
# seconds (the TAT moves to at least now + pause). Returns the seconds to wait, as a string
# (Redis truncates Lua numbers to integers).
RESERVE_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local new_tat = math.max(tat + tonumber(ARGV[1]) * tonumber(ARGV[2]), now + tonumber(ARGV[3]))
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 60000)
return tostring(tat - now)
"""

# KEYS[1]: the shared pace (HASH overshoot_rpm, at). Both return {overshoot_rpm, age in seconds} as strings.
PACE_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local pace = redis.call('HMGET', KEYS[1], 'overshoot_rpm', 'at')
if not pace[1] then return false end
return {pace[1], tostring(now - tonumber(pace[2]))}
"""
# adaptive.next_overshoot in Lua, so that processes cannot both decrease for one overshoot.
# ARGV[1]: the requests/min that overshot, ARGV[2]: DECREASE_AT_MOST_EVERY_SECONDS,
# ARGV[3]: MOST_GROWTH_BEFORE_A_DECREASE, ARGV[4]: the time to live.
OVERSHOT_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local pace = redis.call('HMGET', KEYS[1], 'overshoot_rpm', 'at')
local rpm = tonumber(ARGV[1])
if pace[1] then
  local age = now - tonumber(pace[2])
  if age < tonumber(ARGV[2]) then return {pace[1], tostring(age)} end
  rpm = math.min(rpm, tonumber(ARGV[3]) * tonumber(pace[1]))
end
local stored = string.format('%.6f', rpm)
redis.call('HSET', KEYS[1], 'overshoot_rpm', stored, 'at', string.format('%.6f', now))
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {stored, '0'}
"""


class PaceStateUnavailable(Exception):
    """The Redis that holds the shared pace does not answer."""


class PaceState(Protocol):
    failure: str | None  # why the store stopped answering, once it has (then every call raises)

    async def reserve(self, name: str, seconds_per_unit: float, units: float) -> float:
        """Reserve units on the named schedule; the seconds until this reservation's slot."""

    async def pause(self, seconds: float) -> None:
        """Nothing is reserved before now + seconds."""

    async def learned_limits(self) -> ProviderLimits: ...

    async def learn_limits(self, limits: ProviderLimits) -> None: ...

    async def shared_pace(self) -> SharedPace | None:
        """The pace adapted to 429s (adaptive), if a 429 has set one."""

    async def overshot(self, rpm: float) -> SharedPace:
        """A 429 at rpm: the pace decreases, unless it did for the same overshoot (adaptive.next_overshoot).
        The pace after it; its age is 0 when this call decreased it."""

    async def close(self) -> None: ...


def provider_fingerprint(base_url: str, ai_model: str, api_key: str) -> str:
    """Names a provider limit (endpoint, model, key) without revealing the key."""
    key_digest = hashlib.sha256(api_key.encode()).hexdigest()
    return hashlib.sha256(f"{base_url}\0{ai_model}\0{key_digest}".encode()).hexdigest()[:32]


def redacted(url: str) -> str:
    """The URL with its password, if any, replaced and its query left out (redis-py also takes
    ``?password=``): it goes into error messages."""
    parts = urlsplit(url)._replace(query="", fragment="")
    if parts.password is None:
        return urlunsplit(parts)
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _unanswered(url: str, error: BaseException, what: str = "does not answer") -> str:
    """What went wrong, naming the store by its URL without the password (also not in the error's text)."""
    message = f"the shared pace's Redis at {redacted(url)} {what} ({type(error).__name__}: {error})"
    parts = urlsplit(url)
    for password in [parts.password, *parse_qs(parts.query).get("password", [])]:
        if password:
            message = message.replace(password, "***")
    return message


class PaceStateBreaker:
    """Open from the store's first failure on: every later call fails at once with the same reason,
    instead of each waiting out its own timeouts (a frozen store would cost every document that)."""

    def __init__(self, url: str, errors: tuple[type[BaseException], ...]):
        self._url, self._errors = url, errors
        self.failure: str | None = None

    def __enter__(self) -> None:
        if self.failure is not None:
            raise PaceStateUnavailable(self.failure)

    def __exit__(self, kind, error, traceback) -> None:
        if isinstance(error, self._errors):
            self.failure = self.failure or _unanswered(self._url, error, "stopped answering")
            raise PaceStateUnavailable(self.failure) from None


def _connection_options(retry_type: type) -> dict:
    """Timeouts and retries of every connection to the store (redis-py's own), at launch and in a run."""
    from redis.backoff import ExponentialWithJitterBackoff

    return {
        "socket_connect_timeout": STORE_TIMEOUT_SECONDS,
        "socket_timeout": STORE_TIMEOUT_SECONDS,
        "retry": retry_type(ExponentialWithJitterBackoff(base=0.05, cap=0.5), STORE_RETRIES),
    }


def check_reachable(url: str) -> None:
    """Raise PaceStateUnavailable, naming the URL (redacted), unless the Redis answers."""
    import redis  # only deployments that share a pace load it
    from redis.retry import Retry

    try:
        client = redis.Redis.from_url(url, **_connection_options(Retry))
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, ValueError, OSError) as e:
        raise PaceStateUnavailable(_unanswered(url, e)) from None


def open_pace_state(url: str | None, fingerprint: str) -> PaceState:
    return RedisPaceState(url, fingerprint) if url else local_pace_state(fingerprint)


class LocalPaceState:
    """The pace of every run and step in this process (no Redis configured). Thread-safe and
    tied to no event loop: each step runs its own loop."""

    failure = None  # in this process: it cannot be lost

    def __init__(self):
        self._lock = threading.Lock()
        self._tats: dict[str, float] = {}
        self._limits = ProviderLimits()
        self._pace: tuple[float, float] | None = None  # overshoot_rpm, at (clock.now)

    async def reserve(self, name: str, seconds_per_unit: float, units: float, pause: float = 0.0) -> float:
        with self._lock:
            now = clock.now()
            tat = max(self._tats.get(name, 0.0), now)
            self._tats[name] = max(tat + seconds_per_unit * units, now + pause)
            return tat - now

    async def pause(self, seconds: float) -> None:
        for name in ("requests", "tokens"):
            await self.reserve(name, 0.0, 0.0, pause=seconds)

    async def learned_limits(self) -> ProviderLimits:
        return self._limits

    async def learn_limits(self, limits: ProviderLimits) -> None:
        self._limits = limits

    async def shared_pace(self) -> SharedPace | None:
        with self._lock:
            return self._read_pace()

    async def overshot(self, rpm: float) -> SharedPace:
        with self._lock:
            if (overshoot := next_overshoot(self._read_pace(), rpm)) is None:
                return self._read_pace()
            self._pace = (overshoot, clock.now())
            return SharedPace(overshoot, 0.0)

    def _read_pace(self) -> SharedPace | None:
        return SharedPace(self._pace[0], clock.now() - self._pace[1]) if self._pace else None

    def recall(self, limits: ProviderLimits) -> None:
        """Limits an earlier process learned (kept in the document store), unless this one knows its own."""
        with self._lock:
            if not self._limits.to_stored():
                self._limits = limits

    async def close(self) -> None:
        pass


_LOCAL_STATES: dict[str, LocalPaceState] = {}
_LOCAL_STATES_LOCK = threading.Lock()


def local_pace_state(fingerprint: str) -> LocalPaceState:
    # Process-wide on purpose: a provider's limit is shared by every run and step of the process,
    # so its pace must outlive each of them. It holds pacing state, never a run's parameters.
    with _LOCAL_STATES_LOCK:
        return _LOCAL_STATES.setdefault(fingerprint, LocalPaceState())


class RedisPaceState:
    """The pace of every process using this Redis; one connection pool per event loop (step).
    Any failure of Redis raises PaceStateUnavailable, at once after the first (PaceStateBreaker)."""

    def __init__(self, url: str, fingerprint: str):
        import redis.asyncio  # only deployments that share a pace load it
        from redis.asyncio.retry import Retry

        self._redis = redis.asyncio.Redis.from_url(url, **_connection_options(Retry))
        self._reserve = self._redis.register_script(RESERVE_SCRIPT)
        self._pace = self._redis.register_script(PACE_SCRIPT)
        self._overshot = self._redis.register_script(OVERSHOT_SCRIPT)
        self._prefix = f"{KEY_PREFIX}:{fingerprint}"
        self._errors = (redis.RedisError, OSError)
        self._breaker = PaceStateBreaker(url, self._errors)

    @property
    def failure(self) -> str | None:
        return self._breaker.failure

    async def reserve(self, name: str, seconds_per_unit: float, units: float, pause: float = 0.0) -> float:
        with self._breaker:
            wait = await self._reserve(keys=[f"{self._prefix}:{name}"], args=[seconds_per_unit, units, pause])
        return float(wait)

    async def pause(self, seconds: float) -> None:
        for name in ("requests", "tokens"):
            await self.reserve(name, 0.0, 0.0, pause=seconds)

    async def learned_limits(self) -> ProviderLimits:
        with self._breaker:
            stored = await self._redis.hgetall(f"{self._prefix}:limits")
        return ProviderLimits.from_stored({k.decode(): v.decode() for k, v in stored.items()})

    async def learn_limits(self, limits: ProviderLimits) -> None:
        key = f"{self._prefix}:limits"
        with self._breaker:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                if stored := limits.to_stored():
                    pipe.hset(key, mapping=stored)
                    pipe.expire(key, LEARNED_LIMITS_TTL_SECONDS)
                await pipe.execute()

    async def shared_pace(self) -> SharedPace | None:
        with self._breaker:
            pace = await self._pace(keys=[f"{self._prefix}:pace"])
        return SharedPace(float(pace[0]), float(pace[1])) if pace else None

    async def overshot(self, rpm: float) -> SharedPace:
        args = [rpm, DECREASE_AT_MOST_EVERY_SECONDS, MOST_GROWTH_BEFORE_A_DECREASE, LEARNED_LIMITS_TTL_SECONDS]
        with self._breaker:
            pace = await self._overshot(keys=[f"{self._prefix}:pace"], args=args)
        return SharedPace(float(pace[0]), float(pace[1]))

    async def close(self) -> None:
        with contextlib.suppress(*self._errors):
            await self._redis.aclose()
