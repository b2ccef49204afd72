"""Password hashing: bcrypt, salted, nothing of the password ignored; the hash gate runs it at the lowest CPU
priority, bounds what runs and waits, and refuses at once a login that would wait too long."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from chat.config import load_settings, usable_cpus
from chat.errors import APIError
from chat.security import (
    HashGate,
    check_password_sync,
    hash_password_sync,
    passwords,
)


async def test_hashes_run_in_threads_that_yield_to_the_event_loop():
    gate = HashGate(rounds=4, concurrency=1, queue=4)
    try:
        policy = await asyncio.get_running_loop().run_in_executor(gate.sign_in._executor, os.sched_getscheduler, 0)
        assert policy == os.SCHED_IDLE
        assert os.sched_getscheduler(0) != os.SCHED_IDLE  # the loop's own thread keeps its priority
        assert await gate.check("a password", hash_password_sync("a password", 4))
    finally:
        gate.close()


async def test_a_hash_that_would_wait_past_max_wait_is_refused_at_once():
    gate = HashGate(rounds=4, concurrency=1, queue=100, max_wait=0.5)
    slow_hash = hash_password_sync("slow", 10)  # ~50-100 ms a check here
    try:
        first = asyncio.create_task(gate.check("slow", slow_hash))
        await first  # teaches the gate how long a hash takes
        gate.sign_in._seconds_per_hash = 0.3  # as if each hash took 0.3 s
        running = [asyncio.create_task(gate.check("slow", slow_hash)) for _ in range(2)]
        await asyncio.sleep(0)
        started = time.monotonic()
        with pytest.raises(APIError) as refused:
            await gate.check("slow", slow_hash)  # one running, this one 2nd in line: 2 x 0.3 s > 0.5 s
        assert refused.value.status == 503 and refused.value.headers["Retry-After"] == "1"
        assert time.monotonic() - started < 0.05
        await asyncio.gather(*running)
    finally:
        gate.close()


def test_hash_concurrency_defaults_to_the_cores_this_process_may_use():
    assert load_settings({}).hash_concurrency == len(usable_cpus())


async def test_sign_ups_fill_only_their_own_lane_and_never_refuse_a_sign_in():
    # issue 11: 40 sign-ups filled the gate and every sign-in meanwhile got 503
    gate = HashGate(rounds=10, concurrency=2, queue=4)  # sign-in lane: 2 threads + 4 waiting; sign-up: 1 + 2
    stored = hash_password_sync("the password", 4)
    try:
        sign_ups = [asyncio.create_task(gate.hash(f"sign-up {n}")) for n in range(3)]
        await asyncio.sleep(0)  # all three admitted: the sign-up lane is full
        with pytest.raises(APIError) as refused:
            await gate.hash("one more sign-up")
        assert refused.value.status == 503
        checks = await asyncio.gather(*(gate.check("the password", stored) for _ in range(6)))
        assert checks == [True] * 6  # a full lane's worth of sign-ins, none refused
        await asyncio.gather(*sign_ups)
        policy = await asyncio.get_running_loop().run_in_executor(gate.sign_up._executor, os.sched_getscheduler, 0)
        assert policy == os.SCHED_IDLE
    finally:
        gate.close()


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


async def test_the_gate_bounds_running_and_waiting_hashes(monkeypatch):
    release = threading.Event()
    started = threading.Semaphore(0)

    def slow_hash(password: str, rounds: int) -> str:
        started.release()
        release.wait(10)
        return "hashed"

    monkeypatch.setattr(passwords, "hash_password_sync", slow_hash)
    gate = HashGate(rounds=4, concurrency=1, queue=1)
    reports, refusals = [], []
    gate.report_to(lambda lane, waiting, running: reports.append((lane, waiting, running)), refusals.append)
    assert reports == [("sign-in", 0, 0), ("sign-up", 0, 0)]  # told at once: the metrics show 0, not nothing
    running = asyncio.create_task(gate.hash("first"))
    waiting = asyncio.create_task(gate.hash("second"))
    assert await asyncio.to_thread(started.acquire, True, 5)  # the first runs; the second waits for the slot
    await asyncio.sleep(0)
    assert reports[-1] == ("sign-up", 1, 1)  # what the metrics' gauges hold now
    with pytest.raises(APIError) as refused:
        await gate.hash("third")  # one running + one waiting: full, answered at once
    assert refused.value.status == 503 and refused.value.headers["Retry-After"] == "1"
    assert refusals == ["sign-up"]
    release.set()
    assert await asyncio.wait_for(asyncio.gather(running, waiting), 10) == ["hashed", "hashed"]
    assert reports[-1] == ("sign-up", 0, 0)
    assert await gate.hash("fourth") == "hashed"  # capacity is given back


async def test_an_unknown_user_costs_a_real_check():
    gate = HashGate(rounds=4, concurrency=1, queue=0)
    assert await gate.check("whatever password", None) is False
    assert gate._dummy_hash is not None and gate._dummy_hash.startswith("$2b$04$")
    stored = await gate.hash("whatever password")
    assert await gate.check("whatever password", stored) is True
