"""`python -m bench.asgi_profile`: what one send and one history page (the newest, one `before=` in the middle, and the
newest built anew rather than answered from the page cache) cost in chat's process, layer by layer.

The application (SQLite in a temporary folder, started as hypercorn would start it) is called directly through
ASGI, one request after the other, without a server and without a network: what is measured is everything
above hypercorn (Quart's request and app contexts, the hooks, quart-auth, quart-schema, the domain, the
database thread's hops, orjson). It prints, per request, the wall and CPU microseconds, the number of Python
function calls and the event loop's own time per package (cProfile's tottime, grouped by the file's package),
then the functions with the largest own time. Call counts and per-request costs hardly move with the machine's
load, unlike req/s: use it to compare two trees, e.g.

    PYTHONPATH=/tmp/chat-before .venv/bin/python -m bench.asgi_profile    # the older tree's chat/
    .venv/bin/python -m bench.asgi_profile --requests 3000

`bench.profile` (py-spy, the real server under load) covers hypercorn's own share.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson

from testkit.asgi import body_events, http_scope, queued

PACKAGES = (
    "quart_schema",
    "quart_auth",
    "quart",
    "werkzeug",
    "itsdangerous",
    "pydantic_core",
    "pydantic",
    "tortoise",
    "pypika",
    "aiosqlite",
    "asyncio",
    "hypercorn",
    "chat",
    "bench",
)


def _package(filename: str) -> str:
    parts = Path(filename).parts
    for name in PACKAGES:
        if name in parts:
            return name
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins (C)"
    return "stdlib/other"


class _Asgi:
    """One HTTP request through the application's ASGI callable; returns the status and the body."""

    def __init__(self, app, cookie: bytes) -> None:
        self.app = app
        self.cookie = cookie

    async def request(self, method: str, path: str, query: bytes = b"", body: bytes = b"") -> tuple[int, bytes]:
        headers = [(b"host", b"localhost"), (b"cookie", self.cookie), (b"user-agent", b"bench")]
        scope = http_scope(method, path, query, headers, body)
        events = queued(*body_events(body))  # waiting before the app runs, as hypercorn queues them
        out: dict = {"status": 0, "body": b""}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                out["status"] = message["status"]
            elif message["type"] == "http.response.body":
                out["body"] += message.get("body", b"")

        await self.app(scope, events.get, send)
        return out["status"], out["body"]


async def _signed_up(app, name: str) -> tuple[int, bytes]:
    client = app.test_client()
    body = {"username": name, "email": f"{name}@example.org", "password": "correct horse battery"}
    response = await client.post("/register", json=body)
    assert response.status_code == 201, await response.get_data(as_text=True)
    user_id = (await response.get_json())["id"]
    response = await client.post("/login", json={"username": name, "password": body["password"]})
    assert response.status_code == 200, await response.get_data(as_text=True)
    cookies = [value.split(";", 1)[0] for value in response.headers.getlist("Set-Cookie")]
    cookie = "; ".join(value for value in cookies if value.startswith("chat_session="))
    return user_id, cookie.encode()


async def measure(requests: int, top: int) -> None:
    import chat
    from chat import create_app

    print(f"chat from {Path(chat.__file__).parent}")
    with tempfile.TemporaryDirectory(prefix="chat-asgi-profile-") as tmp:
        app = create_app(instance_path=Path(tmp) / "instance", bcrypt_rounds=4, cookie_secure=False, send_limit=10**9)
        async with app.test_app():
            alice, cookie = await _signed_up(app, "alice")
            bob, _ = await _signed_up(app, "bob")
            asgi = _Asgi(app, cookie)
            counter = 0

            async def send() -> int:
                nonlocal counter
                counter += 1
                body = orjson.dumps({"receiver_id": bob, "content": f"hello {counter}", "client_id": f"c{counter}"})
                status, answer = await asgi.request("POST", "/send-message", body=body)
                assert status == 201, answer
                return orjson.loads(answer)["id"]

            def history(query: str, cached: bool = True):
                async def read() -> None:
                    if not cached:  # as the first reader after a change of the room (page_cache.py)
                        app.extensions["chat"].pages.forget()
                    status, answer = await asgi.request("GET", "/get-messages", query=query.encode())
                    assert status == 200, answer

                return read

            sent = [await send() for _ in range(120)]  # history pages of 50 from here on
            calls = (
                ("send", send),
                ("history", history(f"user_id={bob}&limit=50")),
                ("history before=", history(f"user_id={bob}&limit=50&before={sent[60]}")),  # a page in the middle
                ("history, not cached", history(f"user_id={bob}&limit=50", cached=False)),
            )
            for name, call in calls:
                for _ in range(200):
                    await call()
                wall, cpu = time.perf_counter(), time.process_time()
                for _ in range(requests):
                    await call()
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                profiler = cProfile.Profile(time.thread_time)  # the event loop thread's CPU, not its waits
                profiler.enable()
                for _ in range(requests):
                    await call()
                profiler.disable()
                _report(name, requests, wall, cpu, profiler, top)


def _report(name: str, requests: int, wall: float, cpu: float, profiler: cProfile.Profile, top: int) -> None:
    stats = pstats.Stats(profiler)
    per_package: Counter[str] = Counter()
    package_calls: Counter[str] = Counter()
    own: list[tuple[float, int, str]] = []
    calls = 0
    for (filename, line, function), (_cc, ncalls, tottime, _ct, _callers) in stats.stats.items():
        per_package[_package(filename)] += tottime
        package_calls[_package(filename)] += ncalls
        calls += ncalls
        own.append((tottime, ncalls, f"{Path(filename).name}:{line}({function})"))
    total = sum(per_package.values())
    print(f"\n== {name}: {requests} requests, one after the other")
    print(f"wall {1e6 * wall / requests:.0f} µs/request, CPU (all threads) {1e6 * cpu / requests:.0f} µs/request")
    print(f"Python function calls per request (cProfile): {calls / requests:.0f}")
    print(f"event loop thread's CPU under cProfile, per request: {1e6 * total / requests:.0f} µs")
    print("  µs/request   share  calls/request  package")
    for package, seconds in per_package.most_common():
        share, calls_here = 100 * seconds / total, package_calls[package] / requests
        print(f"  {1e6 * seconds / requests:10.1f}  {share:5.1f} %  {calls_here:13.0f}  {package}")
    print(f"  top {top} functions by own time: µs/request, calls/request")
    for tottime, ncalls, label in sorted(own, reverse=True)[:top]:
        print(f"  {1e6 * tottime / requests:8.1f}  {ncalls / requests:6.1f}  {label}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.asgi_profile", description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    asyncio.run(measure(args.requests, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
