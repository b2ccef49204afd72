"""Password hashing, the hash gate, login throttling and Origin checks, unit by unit."""

from __future__ import annotations

import asyncio
import secrets
import threading

import pytest

from chat.errors import APIError
from chat.security import (
    HashGate,
    MemoryThrottle,
    RedisThrottle,
    check_password_sync,
    hash_password_sync,
    origin_allowed,
    passwords,
    throttles,
)

from .support import BACKEND, REDIS_URL


def test_hashes_are_bcrypt_and_salted():
    first, second = hash_password_sync("correct horse", 4), hash_password_sync("correct horse", 4)
    assert first.startswith("$2b$04$") and first != second
    assert check_password_sync("correct horse", first) and check_password_sync("correct horse", second)
    assert not check_password_sync("correct horsE", first)


@pytest.mark.parametrize(
    ("password", "variant"),
    [
        ("a" * 72 + "1", "a" * 72 + "2"),  # differs only in byte 73
        ("é" * 36 + "x", "é" * 36 + "y"),  # 72 bytes of two-byte characters, then the difference
        ("a" * 128, "a" * 127),
        ("pass\u0000word", "pass"),  # (the API refuses NUL; the hash itself would not stop at it either)
    ],
)
def test_nothing_past_72_bytes_or_after_nul_is_ignored(password, variant):
    stored = hash_password_sync(password, 4)
    assert check_password_sync(password, stored)
    assert not check_password_sync(variant, stored)


# ---------------------------------------------------------------- the hash gate


async def test_the_gate_bounds_running_and_waiting_hashes(monkeypatch):
    release = threading.Event()
    started = threading.Semaphore(0)

    def slow_hash(password: str, rounds: int) -> str:
        started.release()
        release.wait(10)
        return "hashed"

    monkeypatch.setattr(passwords, "hash_password_sync", slow_hash)
    gate = HashGate(rounds=4, concurrency=1, queue=1)
    running = asyncio.create_task(gate.hash("first"))
    waiting = asyncio.create_task(gate.hash("second"))
    assert await asyncio.to_thread(started.acquire, True, 5)  # the first runs; the second waits for the slot
    with pytest.raises(APIError) as refused:
        await gate.hash("third")  # one running + one waiting: full, answered at once
    assert refused.value.status == 503 and refused.value.headers["Retry-After"] == "1"
    release.set()
    assert await asyncio.wait_for(asyncio.gather(running, waiting), 10) == ["hashed", "hashed"]
    assert await gate.hash("fourth") == "hashed"  # capacity is given back


async def test_an_unknown_user_costs_a_real_check():
    gate = HashGate(rounds=4, concurrency=1, queue=0)
    assert await gate.check("whatever password", None) is False
    assert gate._dummy_hash is not None and gate._dummy_hash.startswith("$2b$04$")
    stored = await gate.hash("whatever password")
    assert await gate.check("whatever password", stored) is True


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


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "expected"),
    [
        (None, "chat.example.org", (), True),  # curl, native clients
        ("https://chat.example.org", "chat.example.org", (), True),
        ("http://chat.example.org", "chat.example.org", (), True),  # behind a TLS-terminating proxy
        ("HTTPS://Chat.Example.org/", "chat.example.org", (), True),
        ("http://127.0.0.1:5000", "127.0.0.1:5000", (), True),
        ("http://127.0.0.1:5001", "127.0.0.1:5000", (), False),
        ("https://evil.example", "chat.example.org", (), False),
        ("https://chat.example.org.evil.example", "chat.example.org", (), False),
        ("null", "chat.example.org", (), False),  # sandboxed frames, file:// pages
        ("file://", "chat.example.org", (), False),
        ("https://app.example.org", "chat.example.org", ("https://app.example.org",), True),
    ],
)
def test_origin_allowed(origin, host, allowed, expected):
    assert origin_allowed(origin, host, allowed) is expected


async def test_take_checks_and_counts_in_one_step_and_gives_back_one_place():
    throttle = MemoryThrottle()
    taken = await asyncio.gather(*(throttle.take("k", 5, 60, f"slot{n}") for n in range(20)))
    assert taken.count(None) == 5 and all(isinstance(wait, int) and wait >= 1 for wait in taken if wait is not None)
    await throttle.give_back("k", f"slot{taken.index(None)}")
    assert await throttle.take("k", 5, 60, "again") is None  # exactly the place given back
    assert await throttle.take("k", 5, 60, "more") is not None


@pytest.mark.skipif(BACKEND != "postgres", reason="needs the Redis of the PostgreSQL + Redis pass")
async def test_redis_take_is_atomic_across_concurrent_callers():
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    prefix = f"chat_test_take_{secrets.token_hex(4)}:"
    throttles = [RedisThrottle(client, prefix) for _ in range(4)]  # as four workers
    try:
        taken = await asyncio.gather(*(throttles[n % 4].take("k", 5, 60, f"slot{n}") for n in range(20)))
        assert taken.count(None) == 5, taken
        assert all(1 <= wait <= 60 for wait in taken if wait is not None)
        assert await client.zcard(prefix + "k") == 5
        # Which five got through depends on the order the commands reach Redis: give back one that did.
        await throttles[0].give_back("k", f"slot{taken.index(None)}")
        assert await client.zcard(prefix + "k") == 4
    finally:
        await client.delete(prefix + "k")
        await client.aclose()
