"""Signing in: the set-up logins that give each bench user a session cookie, and scenario 6's login storm."""

from __future__ import annotations

import asyncio
import http.cookiejar
import os
import time
from collections import Counter

import httpx

from .seed import PASSWORD
from .stats import CpuMeter, latency_summary


def _client(base_url: str, connections: int = 64) -> httpx.AsyncClient:
    """A client that keeps no cookies: every login is a new visitor (no session to replace)."""
    client = httpx.AsyncClient(
        base_url=base_url,
        timeout=60,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )
    client.cookies.jar.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return client


async def _login(client: httpx.AsyncClient, username: str) -> httpx.Response:
    return await client.post("/login", json={"username": username, "password": PASSWORD})


async def sign_in(base_url: str, usernames: list[str], parallel: int = 2, patience: float = 120) -> list[str]:
    """A Cookie header for each user, in order (before any timing: cost-12 hashes take ~0.25 s each).

    A few at a time, retrying what the server answers 503 busy (its hash queue is bounded in time).
    """
    gate = asyncio.Semaphore(parallel)
    deadline = time.monotonic() + patience
    async with _client(base_url) as client:

        async def one(username: str) -> str:
            async with gate:
                while True:
                    response = await _login(client, username)
                    if response.status_code == 200:
                        return "; ".join(f"{name}={value}" for name, value in response.cookies.items())
                    if response.status_code != 503 or time.monotonic() > deadline:
                        raise RuntimeError(f"login of {username} failed: {response.status_code} {response.text}")
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))

        return list(await asyncio.gather(*(one(name) for name in usernames)))


async def capacity(base_url: str, usernames: list[str], seconds: float, parallel: int = 2) -> dict:
    """Closed loop of logins: how many the server can hash per second. Like a polite client, one answered
    503 busy waits its Retry-After before trying again (not counted)."""
    stop_at = time.perf_counter() + seconds
    statuses: Counter[int] = Counter()
    async with _client(base_url) as client:

        async def worker(offset: int) -> None:
            number = offset
            while time.perf_counter() < stop_at:
                response = await _login(client, usernames[number % len(usernames)])
                statuses[response.status_code] += 1
                if response.status_code == 503:
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                number += parallel

        with CpuMeter() as meter:
            await asyncio.gather(*(worker(offset) for offset in range(parallel)))
    return {
        "logins_per_s": round(statuses[200] / meter.wall, 2),
        "statuses": {str(key): value for key, value in statuses.items()},
        "seconds": round(meter.wall, 2),
    }


async def storm(base_url: str, usernames: list[str], rate: float, seconds: float) -> dict:
    """Logins offered at a fixed rate, whatever the answers; each one's latency from when it was due."""
    results: list[tuple[int, float]] = []
    start = time.perf_counter() + 0.05
    async with _client(base_url, connections=512) as client:

        async def one(number: int, due: float) -> None:
            try:
                status = (await _login(client, usernames[number % len(usernames)])).status_code
            except httpx.HTTPError:
                status = 0
            results.append((status, time.perf_counter() - due))

        tasks = []
        for number in range(int(rate * seconds)):
            due = start + number / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(number, due)))
        await asyncio.gather(*tasks)
    statuses = Counter(status for status, _ in results)
    accepted = [latency for status, latency in results if status == 200]
    refused = [latency for status, latency in results if status in (429, 503)]
    return {
        "offered_per_s": round(rate, 2),
        "statuses": {str(key): value for key, value in statuses.items()},
        "accepted_per_s": round(len(accepted) / seconds, 2),
        **latency_summary(accepted, "accepted_"),
        **latency_summary(refused, "refused_"),
    }


def storm_in_process(base_url: str, usernames: list[str], rate: float, seconds: float) -> dict:
    """storm() in a process of its own (run through a process pool): its HTTP work must not delay the real-time
    client that measures the messages' latency in the harness's event loop meanwhile. It shares that client's
    core at the lowest priority: the logins are sent when due unless the real-time client has work."""
    os.setpriority(os.PRIO_PROCESS, 0, 19)
    return asyncio.run(storm(base_url, usernames, rate, seconds))
