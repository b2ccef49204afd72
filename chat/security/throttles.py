"""Throttles: counts of events (failed sign-ins, sign-ups, sent messages) in sliding windows, per key."""

from __future__ import annotations

import contextlib
import math
import secrets
import time
from collections import deque
from typing import Protocol

from redis.exceptions import RedisError


class Throttle(Protocol):
    """Sliding windows of hits per key: MemoryThrottle in one process, RedisThrottle shared by every worker."""

    async def take(self, key: str, limit: int, window: float, slot: str | None = None) -> int | None:
        """Count a hit if `key` is under `limit`, as one atomic step; else the seconds to wait. Name the hit
        `slot` to give it back later; None: a hit of its own, never given back."""

    async def give_back(self, key: str, slot: str) -> None:
        """Undo one `take`."""

    async def reset(self, key: str) -> None:
        """Forget every hit of `key`."""


def _wait_until_out(oldest: float, window: float, now: float) -> int:
    """Whole seconds (1 to the window's) until a hit made at `oldest` leaves the window.

    Never more than the window: a concurrent caller's hit may carry a time a little after this caller's `now`.
    """
    return min(max(1, int(oldest + window - now + 0.999)), math.ceil(window))


class MemoryThrottle:
    """Counts of events (failed logins, sent messages) in sliding windows, per key, in this process.

    RedisThrottle keeps the same windows in Redis when workers share one (CHAT_BROKER_URL=redis://).
    Each hit is (time, slot): `take` names its hit so that `give_back` can remove exactly that one.
    """

    def __init__(self) -> None:
        self._hits: dict[str, deque[tuple[float, str]]] = {}
        self._writes = 0

    def _recent(self, key: str, window: float, now: float) -> deque[tuple[float, str]]:
        stamps = self._hits.get(key)
        if stamps is None:
            return deque()
        while stamps and stamps[0][0] <= now - window:
            stamps.popleft()
        if not stamps:
            del self._hits[key]
        return stamps

    async def retry_after(self, key: str, limit: int, window: float) -> int | None:
        """Seconds to wait if `key` has `limit` hits within `window`, else None."""
        now = time.monotonic()
        stamps = self._recent(key, window, now)
        if len(stamps) < limit:
            return None
        return _wait_until_out(stamps[-limit][0], window, now)

    async def hit(self, key: str, window: float, slot: str = "") -> None:
        now = time.monotonic()
        self._hits.setdefault(key, deque()).append((now, slot))
        self._writes += 1
        if self._writes % 1024 == 0:  # forget keys whose hits all expired, so memory stays bounded
            for stale in list(self._hits):
                self._recent(stale, window, now)

    async def take(self, key: str, limit: int, window: float, slot: str | None = None) -> int | None:
        """Count a hit (named `slot`) if `key` is under `limit`, as one step; else the seconds to wait.

        Atomic in this process: nothing awaits between the check and the count, so concurrent callers can
        never take more than `limit` (a check now and a hit after the password check let 9 of 20 through).
        """
        if wait := await self.retry_after(key, limit, window):
            return wait
        await self.hit(key, window, slot or "")
        return None

    async def give_back(self, key: str, slot: str) -> None:
        """Undo one `take` (the attempt turned out not to be a failure)."""
        stamps = self._hits.get(key)
        if stamps is not None:
            for entry in [entry for entry in stamps if entry[1] == slot]:
                stamps.remove(entry)

    async def reset(self, key: str) -> None:
        self._hits.pop(key, None)


# Check and count in one step inside Redis: concurrent workers can never take more than the limit together.
# KEYS[1]: the sorted set; ARGV: now, window, limit, slot. Returns nil when taken, else the score of the hit
# whose expiry frees a place.
_TAKE_SCRIPT = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  return redis.call('ZRANGE', KEYS[1], -limit, -limit, 'WITHSCORES')[2]
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('EXPIRE', KEYS[1], math.ceil(window) + 1)
return false
"""


class RedisThrottle:
    """The same windows in Redis sorted sets, shared by every worker and machine.

    While Redis is unreachable each worker counts on its own (MemoryThrottle): limits loosen by the number of
    workers for that time, rather than every login and send failing.
    """

    def __init__(self, client, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._fallback = MemoryThrottle()
        self._take_script = client.register_script(_TAKE_SCRIPT)

    async def take(self, key: str, limit: int, window: float, slot: str | None = None) -> int | None:
        now = time.time()
        slot = slot or secrets.token_hex(8)  # a sorted set's member: two hits of one key never share one
        try:
            oldest = await self._take_script(keys=[self._prefix + key], args=[now, window, limit, slot])
        except (OSError, RedisError):
            return await self._fallback.take(key, limit, window, slot)
        return None if oldest is None else _wait_until_out(float(oldest), window, now)

    async def give_back(self, key: str, slot: str) -> None:
        await self._fallback.give_back(key, slot)
        with contextlib.suppress(OSError, RedisError):
            await self._client.zrem(self._prefix + key, slot)

    async def reset(self, key: str) -> None:
        await self._fallback.reset(key)
        with contextlib.suppress(OSError, RedisError):
            await self._client.delete(self._prefix + key)
