"""Where a provider's rate budget lives: in this process, or in Redis for every process that uses
the same provider, model and API key.

A budget is a GCRA schedule (the generic cell rate algorithm): for each of "requests" and
"tokens" one number, the theoretical arrival time (TAT) of the next unit. A request reserves its
units by moving the TAT on and waits until its own slot; so requests go out evenly spaced, with
no polling and no herd after a pause, and the rate can change with every call (limits learned
while the run goes). A pause is the TAT moved to the pause's end. Times are the Redis server's
clock in Redis, so processes on different hosts agree.

Chosen over `limits` and `pyrate-limiter`: both answer "allowed now?" only (callers poll and
surge together), keep the rate in the key or the bucket (a learned rate would start a fresh,
empty window) and cannot pause everyone or give back an overestimate.
"""

import hashlib
import threading
import time
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from batch_pipeline.rate_limits.limits import ProviderLimits

KEY_PREFIX = "batch_pipeline:rate_budget"
LEARNED_LIMITS_TTL_SECONDS = 24 * 3600

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


class RateLimitStoreUnavailable(Exception):
    """The Redis that holds the shared budget does not answer."""


class BudgetStore(Protocol):
    async def reserve(self, name: str, seconds_per_unit: float, units: float) -> float:
        """Reserve units on the named schedule; the seconds until this reservation's slot."""

    async def pause(self, seconds: float) -> None:
        """Nothing is reserved before now + seconds."""

    async def learned_limits(self) -> ProviderLimits: ...

    async def learn_limits(self, limits: ProviderLimits) -> None: ...

    async def close(self) -> None: ...


def provider_fingerprint(base_url: str, ai_model: str, api_key: str) -> str:
    """Names a provider limit (endpoint, model, key) without revealing the key."""
    key_digest = hashlib.sha256(api_key.encode()).hexdigest()
    return hashlib.sha256(f"{base_url}\0{ai_model}\0{key_digest}".encode()).hexdigest()[:32]


def redacted(url: str) -> str:
    """The URL with its password, if any, replaced: it goes into error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def check_reachable(url: str) -> None:
    """Raise RateLimitStoreUnavailable, naming the URL (redacted), unless the Redis answers."""
    import redis  # only deployments that share a budget load it

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, ValueError, OSError) as e:
        raise RateLimitStoreUnavailable(
            f"the rate-limit store at {redacted(url)} does not answer ({type(e).__name__}: {e})"
        ) from None


def open_budget_store(url: str | None, fingerprint: str) -> BudgetStore:
    return RedisBudgetStore(url, fingerprint) if url else local_budget_store(fingerprint)


class LocalBudgetStore:
    """The budget of every run and step in this process (no Redis configured). Thread-safe and
    tied to no event loop: each step runs its own loop."""

    def __init__(self):
        self._lock = threading.Lock()
        self._tats: dict[str, float] = {}
        self._limits = ProviderLimits()

    async def reserve(self, name: str, seconds_per_unit: float, units: float, pause: float = 0.0) -> float:
        with self._lock:
            now = time.time()
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

    def recall(self, limits: ProviderLimits) -> None:
        """Limits an earlier process learned (kept in the document store), unless this one knows its own."""
        with self._lock:
            if not self._limits.to_stored():
                self._limits = limits

    async def close(self) -> None:
        pass


_LOCAL_STORES: dict[str, LocalBudgetStore] = {}
_LOCAL_STORES_LOCK = threading.Lock()


def local_budget_store(fingerprint: str) -> LocalBudgetStore:
    # Process-wide on purpose: a provider's limit is shared by every run and step of the process,
    # so its budget must outlive each of them. It holds pacing state, never a run's parameters.
    with _LOCAL_STORES_LOCK:
        return _LOCAL_STORES.setdefault(fingerprint, LocalBudgetStore())


class RedisBudgetStore:
    """The budget of every process using this Redis; one connection pool per event loop (step)."""

    def __init__(self, url: str, fingerprint: str):
        import redis.asyncio  # only deployments that share a budget load it

        self._redis = redis.asyncio.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
        self._reserve = self._redis.register_script(RESERVE_SCRIPT)
        self._prefix = f"{KEY_PREFIX}:{fingerprint}"

    async def reserve(self, name: str, seconds_per_unit: float, units: float, pause: float = 0.0) -> float:
        wait = await self._reserve(keys=[f"{self._prefix}:{name}"], args=[seconds_per_unit, units, pause])
        return float(wait)

    async def pause(self, seconds: float) -> None:
        for name in ("requests", "tokens"):
            await self.reserve(name, 0.0, 0.0, pause=seconds)

    async def learned_limits(self) -> ProviderLimits:
        stored = await self._redis.hgetall(f"{self._prefix}:limits")
        return ProviderLimits.from_stored({k.decode(): v.decode() for k, v in stored.items()})

    async def learn_limits(self, limits: ProviderLimits) -> None:
        key = f"{self._prefix}:limits"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if stored := limits.to_stored():
                pipe.hset(key, mapping=stored)
                pipe.expire(key, LEARNED_LIMITS_TTL_SECONDS)
            await pipe.execute()

    async def close(self) -> None:
        await self._redis.aclose()
