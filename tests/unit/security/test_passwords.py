"""bcrypt runs at the lowest CPU priority, and a login that would wait too long is refused at once."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from chat.config import load_settings, usable_cpus
from chat.errors import APIError
from chat.security import HashGate, hash_password_sync


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
