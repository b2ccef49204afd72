"""Throttles (memory and Redis): failures counted in a window, expired keys forgotten, places taken and given back."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from chat.security import (
    MemoryThrottle,
    RedisThrottle,
    throttles,
)
from testkit.backends import BACKEND, REDIS_URL

# ---------------------------------------------------------------- the hash gate


# ---------------------------------------------------------------- throttling


async def test_the_throttle_counts_failures_in_a_window(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(throttles.time, "monotonic", lambda: now[0])
    throttle = MemoryThrottle()
    for _ in range(3):
        assert await throttle.retry_after("k", limit=3, window=60) is None
        await throttle.hit("k", window=60)
        now[0] += 10
    assert await throttle.retry_after("k", limit=3, window=60) == 30  # the oldest expires at 1060, now is 1030
    assert await throttle.retry_after("other", limit=3, window=60) is None
    now[0] += 30
    assert await throttle.retry_after("k", limit=3, window=60) is None  # the first failure left the window
    await throttle.hit("k", window=60)
    assert await throttle.retry_after("k", limit=3, window=60) == 10
    await throttle.reset("k")
    assert await throttle.retry_after("k", limit=3, window=60) is None


async def test_the_throttle_forgets_expired_keys(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(throttles.time, "monotonic", lambda: now[0])
    throttle = MemoryThrottle()
    for i in range(1024):
        await throttle.hit(f"address-{i}", window=60)
    now[0] += 61
    for i in range(1024):
        await throttle.hit(f"later-{i}", window=60)
    assert not any(key.startswith("address-") for key in throttle._hits)


# ---------------------------------------------------------------- origins


async def test_take_checks_and_counts_in_one_step_and_gives_back_one_place():
    throttle = MemoryThrottle()
    taken = await asyncio.gather(*(throttle.take("k", 5, 60, f"slot{n}") for n in range(20)))
    assert taken.count(None) == 5 and all(isinstance(wait, int) and wait >= 1 for wait in taken if wait is not None)
    await throttle.give_back("k", f"slot{taken.index(None)}")
    assert await throttle.take("k", 5, 60, "again") is None  # exactly the place given back
    assert await throttle.take("k", 5, 60, "more") is not None


async def test_hits_taken_without_a_slot_are_each_counted():
    throttle = MemoryThrottle()
    assert [await throttle.take("k", 3, 60) for _ in range(4)][:3] == [None, None, None]
    assert await throttle.take("k", 3, 60) == 60  # the fourth and fifth wait for the first to leave the window


@pytest.fixture
async def redis_key():
    """A Redis client and a prefix of its own for the key "k", which is deleted after the test."""
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    prefix = f"chat_test_take_{secrets.token_hex(4)}:"
    try:
        yield client, prefix
    finally:
        await client.delete(prefix + "k")
        await client.aclose()


@pytest.mark.skipif(BACKEND != "postgres", reason="needs the Redis of the PostgreSQL + Redis pass")
async def test_redis_hits_taken_without_a_slot_are_each_counted_once(redis_key):
    client, prefix = redis_key
    throttles = [RedisThrottle(client, prefix) for _ in range(2)]  # as two workers
    taken = await asyncio.gather(*(throttles[n % 2].take("k", 5, 60) for n in range(8)))
    assert taken.count(None) == 5, taken
    assert await client.zcard(prefix + "k") == 5  # one member per hit: none overwrote another


@pytest.mark.skipif(BACKEND != "postgres", reason="needs the Redis of the PostgreSQL + Redis pass")
async def test_redis_take_is_atomic_across_concurrent_callers(redis_key):
    client, prefix = redis_key
    throttles = [RedisThrottle(client, prefix) for _ in range(4)]  # as four workers
    taken = await asyncio.gather(*(throttles[n % 4].take("k", 5, 60, f"slot{n}") for n in range(20)))
    assert taken.count(None) == 5, taken
    assert all(1 <= wait <= 60 for wait in taken if wait is not None)
    assert await client.zcard(prefix + "k") == 5
    # Which five got through depends on the order the commands reach Redis: give back one that did.
    await throttles[0].give_back("k", f"slot{taken.index(None)}")
    assert await client.zcard(prefix + "k") == 4
