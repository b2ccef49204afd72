"""Password hashing: bcrypt, off the event loop, in bounded lanes (HashGate)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import bcrypt

from ..errors import APIError

HASH_MAX_WAIT = 1.0  # seconds a login may wait for a hashing thread before it is answered 503


def _reduce(password: str) -> bytes:
    """bcrypt reads at most 72 bytes; reduce every password first so that none is ever truncated.

    base64(SHA-384) is 64 bytes with no NUL, as OWASP's Password Storage Cheat Sheet describes.
    """
    return base64.b64encode(hashlib.sha384(password.encode("utf-8")).digest())


def hash_password_sync(password: str, rounds: int) -> str:
    return bcrypt.hashpw(_reduce(password), bcrypt.gensalt(rounds)).decode("ascii")


def check_password_sync(password: str, password_hash: str) -> bool:
    return bcrypt.checkpw(_reduce(password), password_hash.encode("ascii"))


def _lowest_cpu_priority() -> None:
    """Run the calling thread only when its core has nothing else to do (SCHED_IDLE; else nice 19)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # 0: this thread, on Linux
    except (AttributeError, OSError):
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class _Lane:
    """One budget of the HashGate: its own threads, its own waiting places, its own measure of a hash's time."""

    def __init__(self, name: str, threads: int, queue: int, max_wait: float) -> None:
        self.name = name
        self.threads = threads
        self.max_wait = max_wait
        self._slots = asyncio.Semaphore(threads)
        self._capacity = threads + queue
        self._admitted = 0  # waiting for a thread or running
        self._running = 0
        self.on_change: Callable[[str, int, int], None] = lambda lane, waiting, running: None  # (metrics)
        self.on_refused: Callable[[str], None] = lambda lane: None
        self._seconds_per_hash = 0.0  # moving average of recent hashes, from the moment each got a thread
        self._executor = ThreadPoolExecutor(threads, f"bcrypt-{name}", initializer=_lowest_cpu_priority)

    def expected_wait(self) -> float:
        """Seconds a hash admitted now would wait for a thread."""
        waiting = max(0, self._admitted - self.threads + 1)
        return waiting / self.threads * self._seconds_per_hash

    async def run(self, func, *args):
        if self._admitted >= self._capacity or self.expected_wait() > self.max_wait:
            self.on_refused(self.name)
            raise APIError(503, "busy", "The server is busy signing people in; retry shortly.", {"Retry-After": "1"})
        self._admitted += 1
        self.report()
        try:
            async with self._slots:
                self._running += 1
                self.report()
                try:
                    started = time.monotonic()
                    result = await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)
                finally:
                    self._running -= 1
                took = time.monotonic() - started
                self._seconds_per_hash = (
                    took if not self._seconds_per_hash else 0.8 * self._seconds_per_hash + 0.2 * took
                )
                return result
        finally:
            self._admitted -= 1
            self.report()

    def report(self) -> None:
        """Tell on_change how many hashes wait for a thread and how many run."""
        self.on_change(self.name, self._admitted - self._running, self._running)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class HashGate:
    """Runs bcrypt off the event loop: a bounded number at once, at the lowest CPU priority, with a bounded wait.

    A hash costs ~0.25 s of a core. Its threads run SCHED_IDLE, so the event loop (and every socket it serves)
    takes the core back the moment it has work: a flood of logins gets what live traffic leaves, instead of
    slowing every message. A login that would wait more than `max_wait` seconds (judged by how long recent hashes
    took, which grows when the loop leaves little) or finds the queue full is answered 503 at once, rather than
    pile up in a queue that answers a minute later.

    Checks (sign-ins) and new hashes (sign-ups, new passwords) have separate lanes: a flood of sign-ups fills
    only its own, about half as large, and never a place that a sign-in could take (issue 11 saw every sign-in
    503ed during one). The sign-up lane's threads are extra ones: while both lanes are busy a sign-in shares
    the cores with at most half as many sign-up hashes, so it is slower, never refused for them.
    """

    def __init__(self, rounds: int, concurrency: int, queue: int, max_wait: float = HASH_MAX_WAIT) -> None:
        self.rounds = rounds
        self.sign_in = _Lane("sign-in", concurrency, queue, max_wait)
        self.sign_up = _Lane("sign-up", (concurrency + 1) // 2, (queue + 1) // 2, max_wait)
        self._dummy_hash: str | None = None

    def close(self) -> None:
        self.sign_in.close()
        self.sign_up.close()

    def report_to(self, on_change: Callable[[str, int, int], None], on_refused: Callable[[str], None]) -> None:
        """Have both lanes tell how many hashes wait and run (at once, then at each change), and each refusal."""
        for lane in (self.sign_in, self.sign_up):
            lane.on_change, lane.on_refused = on_change, on_refused
            lane.report()

    async def hash(self, password: str) -> str:
        """A new hash (a sign-up, a new password): in the sign-up lane."""
        return await self.sign_up.run(hash_password_sync, password, self.rounds)

    async def check(self, password: str, password_hash: str | None) -> bool:
        """Check a password; with no hash (unknown user) spend the same time on a dummy one."""
        if password_hash is None:
            if self._dummy_hash is None:  # made in the sign-in lane: a sign-up flood must not refuse it
                self._dummy_hash = await self.sign_in.run(hash_password_sync, secrets.token_urlsafe(16), self.rounds)
            await self.sign_in.run(check_password_sync, password, self._dummy_hash)
            return False
        return await self.sign_in.run(check_password_sync, password, password_hash)
