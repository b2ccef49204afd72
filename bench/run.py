"""`python -m bench`: every server in turn on CPU 0, the load from CPU 1, one table at the end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import signal
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

from testkit import probes

from . import flaskenv, httpload, logins, procs, report, rt, seed
from .options import Options, parse
from .servers import (
    BARE_QUART,
    CHAT,
    FLASK_SERVERS,
    FLASK_THREADING,
    REFERENCE_DIR,
    ROOT,
    BenchServer,
    bare_server,
    chat_server,
    chat_sources,
    flask_server,
    is_chat,
)

BARE_COOKIE = "chat_session=bench"  # the bare servers only check that a session cookie is there


def log(*parts: object) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}]", *parts, file=sys.stderr, flush=True)


class Run:
    def __init__(self, options: Options, workdir: Path) -> None:
        self.options = options
        self.workdir = workdir
        self.run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
        self.records: list[dict] = []
        self.loadavg_at_start = Path("/proc/loadavg").read_text().split()[:3]
        self.flask_bin: Path | None = None
        self.layout = seed.Layout(options.users, options.history_sizes if 2 in options.scenarios else ())
        self.sources = chat_sources(options.chat_sources)
        self.prepared: set[str] = set()  # servers whose database is seeded: later rounds reuse it
        self.round = 0

    # ---------------------------------------------------------------- bookkeeping

    def record(self, server: str, scenario: int, variant: str, **figures: object) -> dict:
        entry = {"run": self.run_id, "round": self.round, "server": server, "scenario": scenario, "variant": variant}
        entry |= figures
        self.records.append(entry)
        log(server, f"s{scenario}", variant, json.dumps(figures)[:400])
        return entry

    def machine(self) -> dict:
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        return {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "nproc": os.cpu_count(),
            "cpu": model,
            "python": platform.python_version(),
            "pinned": procs.can_pin(),
            "nice": self.options.nice,
            "loadavg_at_start": self.loadavg_at_start,
            "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3],
            "options": {key: value for key, value in vars(self.options).items()},
        }

    # ---------------------------------------------------------------- servers

    def make_server(self, name: str) -> BenchServer:
        workdir = self.workdir / name
        workdir.mkdir(parents=True, exist_ok=True)
        worker_class = None if self.options.worker_class == "asyncio" else self.options.worker_class
        if is_chat(name):
            return chat_server(workdir, worker_class, name, self.sources[name])
        if name in FLASK_SERVERS:
            if self.flask_bin is None:
                self.flask_bin = flaskenv.ensure(REFERENCE_DIR, log)
            return flask_server(name, workdir, self.flask_bin, REFERENCE_DIR, self.options.idle_sockets + 1000)
        return bare_server(name, workdir, worker_class)

    def prepare_database(self, server: BenchServer) -> None:
        if server.schema is None or server.name in self.prepared:
            return
        started = time.perf_counter()
        seed.create_schema(server, self.flask_bin / "python" if self.flask_bin else None)
        seed.seed(server.db_path, server.schema, self.layout, self.options.bcrypt_rounds)
        log(server.name, f"database ready in {time.perf_counter() - started:.1f}s ({server.db_path})")
        self.prepared.add(server.name)

    async def sign_in(self, server: BenchServer) -> dict[int, str]:
        """A session cookie per bench user (and the history reader), before any timing."""
        ids = list(range(1, self.options.users + 1))
        if self.layout.history_sizes:
            ids.append(self.layout.reader)
        if server.schema is None:
            return dict.fromkeys(ids, BARE_COOKIE)
        started = time.perf_counter()
        cookies = await logins.sign_in(server.base_url, [self.layout.name(i) for i in ids])
        log(server.name, f"{len(ids)} users signed in in {time.perf_counter() - started:.1f}s")
        return dict(zip(ids, cookies, strict=True))

    def user_pairs(self) -> list[tuple[int, int]]:
        return [(2 * i + 1, 2 * i + 2) for i in range(self.options.pairs)]

    # ---------------------------------------------------------------- the run

    async def bench(self, name: str) -> None:
        server = self.make_server(name)
        self.prepare_database(server)
        log(name, "starting")
        server.start()
        try:
            cookies = await self.sign_in(server)
            scenarios = self.options.scenarios
            if 1 in scenarios:
                self.send_messages(server, cookies)
            if 2 in scenarios:
                self.history(server, cookies)
            if name != BARE_QUART:  # the bare Quart app has no websocket; raw ASGI relays chat's protocol
                if 3 in scenarios:
                    await self.closed_loop(server, cookies)
                if 4 in scenarios or 6 in scenarios:
                    quiet = await self.open_loop(server, cookies)
                if 6 in scenarios and is_chat(name):  # the reference has no hash queue to measure
                    await self.login_storm(server, cookies, quiet)
                if 5 in scenarios:
                    await self.idle_sockets(server, cookies)
                if 7 in scenarios and name == CHAT:  # the others have no channels
                    await self.channel(server, cookies)
        finally:
            server.stop()
        if "Traceback" in server.log():
            log(name, f"the server logged a traceback: see {server.log_path}")

    def _server_cpu(self, server: BenchServer):
        pid = server.worker_pid()
        return pid, probes.cpu_seconds(pid), time.perf_counter()

    def _cpu_pct(self, mark) -> float:
        pid, cpu0, wall0 = mark
        return round(100 * (probes.cpu_seconds(pid) - cpu0) / (time.perf_counter() - wall0), 1)

    def send_messages(self, server: BenchServer, cookies: dict[int, str]) -> None:
        """Scenario 1: POST /send-message from every bench user to its partner; then each 2xx stored exactly once."""
        clients = []
        for a, b in self.user_pairs():
            clients += [(cookies[a], b), (cookies[b], a)]
        prefix = f"s1{uuid.uuid4().hex[:6]}"
        ids_file = server.workdir / f"send-ok-{prefix}.txt"
        mark = self._server_cpu(server)
        result = httpload.run_wrk(
            server.base_url,
            "send.lua",
            self.options.send_seconds,
            self.options.send_connections,
            clients,
            server.workdir,
            {"BENCH_PREFIX": prefix, "BENCH_WRK_IDS": str(ids_file)},
        )
        result["server_cpu_pct"] = self._cpu_pct(mark)
        acknowledged = [line for line in ids_file.read_text().splitlines() if line]
        if server.db_path is not None:
            stored = seed.stored_client_ids(server.db_path, server.schema, prefix)
            result["stored"] = sum(stored.values())
            result["acknowledged_missing"] = sum(1 for cid in acknowledged if stored.get(cid, 0) == 0)
            result["acknowledged_duplicated"] = sum(1 for cid in acknowledged if stored.get(cid, 0) > 1)
            result["acknowledged_twice"] = len(acknowledged) - len(set(acknowledged))
            result["exactly_once"] = (
                result["acknowledged_missing"] == 0
                and result["acknowledged_duplicated"] == 0
                and result["acknowledged_twice"] == 0
            )
        self.record(server.name, 1, "send", connections=self.options.send_connections, **result)

    def history(self, server: BenchServer, cookies: dict[int, str]) -> None:
        """Scenario 2: the newest 50 and a `before=` page from the middle, per conversation size."""
        reader = self.layout.reader
        if server.schema is None:  # the bare servers keep 1 000 messages in memory
            variants = [("newest", "memory", "/get-messages?user_id=2", 1000)]
        else:
            variants = []
            for size in self.layout.history_sizes:
                peer = self.layout.peer(size)
                middle = seed.middle_id(server.db_path, server.schema, reader, peer)
                variants.append(("newest", size, f"/get-messages?user_id={peer}", size))
                variants.append(("before", size, f"/get-messages?user_id={peer}&before={middle}", size))
        for shape, label, path, size in variants:
            check = httpx.get(server.base_url + path, headers={"Cookie": cookies[reader]}, timeout=30)
            page = check.json()
            if check.status_code != 200 or len(page["messages"]) != min(50, size // 2 if shape == "before" else size):
                raise RuntimeError(f"{server.name} {path}: {check.status_code} {check.text[:300]}")
            mark = self._server_cpu(server)
            result = httpload.run_wrk(
                server.base_url,
                "get.lua",
                self.options.history_seconds,
                self.options.history_connections,
                [(cookies[reader], 0)],
                server.workdir,
                {"BENCH_PATH": path},
            )
            result["server_cpu_pct"] = self._cpu_pct(mark)
            self.record(server.name, 2, f"{shape}-{label}", conversation=size, **result)

    def _protocol(self, server: BenchServer) -> str:
        return "socketio" if server.schema == "flask" else "chat"

    async def closed_loop(self, server: BenchServer, cookies: dict[int, str]) -> None:
        pairs = await rt.open_pairs(self._protocol(server), server.ws_url, cookies, self.user_pairs())
        try:
            mark = self._server_cpu(server)
            result = await rt.closed_loop(pairs, self.options.closed_seconds)
            result["server_cpu_pct"] = self._cpu_pct(mark)
        finally:
            await rt.close_pairs(pairs)
        self.record(server.name, 3, "closed-loop", pairs=len(pairs), **result)

    async def open_loop(self, server: BenchServer, cookies: dict[int, str], during: str = "quiet") -> dict:
        pairs = await rt.open_pairs(self._protocol(server), server.ws_url, cookies, self.user_pairs())
        try:
            mark = self._server_cpu(server)
            result = await rt.open_loop(pairs, self.options.open_rate, self.options.open_seconds)
            result["server_cpu_pct"] = self._cpu_pct(mark)
        finally:
            await rt.close_pairs(pairs)
        return self.record(server.name, 4, f"open-loop-{during}", pairs=len(pairs), **result)

    async def login_storm(self, server: BenchServer, cookies: dict[int, str], quiet: dict) -> None:
        """Scenario 6: logins/s capacity, then twice that offered while the open loop runs."""
        names = [self.layout.name(i) for i in range(1, self.options.users + 1)]
        cap = await logins.capacity(server.base_url, names, self.options.capacity_seconds)
        self.record(server.name, 6, "capacity", **cap)
        rate = max(1.0, cap["logins_per_s"] * self.options.storm_factor)
        pairs = await rt.open_pairs(self._protocol(server), server.ws_url, cookies, self.user_pairs())
        try:
            mark = self._server_cpu(server)
            seconds = self.options.storm_seconds
            messages, storm = await asyncio.gather(
                rt.open_loop(pairs, self.options.open_rate, seconds),
                logins.storm(server.base_url, names, rate, seconds),
            )
            cpu = self._cpu_pct(mark)
        finally:
            await rt.close_pairs(pairs)
        ratio = messages["p99_ms"] / quiet["p99_ms"] if quiet.get("p99_ms") else None
        self.record(
            server.name,
            6,
            "storm",
            capacity_per_s=cap["logins_per_s"],
            logins=storm,
            messages=messages,
            p99_storm_over_quiet=None if ratio is None else round(ratio, 2),
            server_cpu_pct=cpu,
        )

    async def idle_sockets(self, server: BenchServer, cookies: dict[int, str]) -> None:
        """Scenario 5: many idle sockets in one room: server RSS per socket, then one message fanned out to all."""
        wanted = self.options.idle_sockets_threading if server.name == FLASK_THREADING else self.options.idle_sockets
        a, b = 1, 2
        room = rt.room_of(a, b)
        protocol = self._protocol(server)
        fan_out = rt.FanOut(expected=wanted)
        # warm up: the first sockets load code and fill caches that later ones reuse
        warm, _ = await rt.open_idle(protocol, server.ws_url, [cookies[a]], room, 20, rt.FanOut(expected=20))
        await rt.close_all(warm)
        pid = server.worker_pid()
        rss_before = probes.rss_kib(pid)
        traced = await self._trace(pid)
        started = time.perf_counter()
        sockets, errors = await rt.open_idle(protocol, server.ws_url, [cookies[a], cookies[b]], room, wanted, fan_out)
        open_seconds = time.perf_counter() - started
        await asyncio.sleep(0)  # noqa: ASYNC110
        rss_after = probes.rss_kib(pid)
        traced = await self._trace(pid, traced)
        fan_out.expect(len(sockets))
        fan_out_ms = None
        spread: dict[str, float] = {}
        try:
            if sockets:
                cpu_before = probes.cpu_seconds(pid)
                sent = time.perf_counter()
                async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
                    response = await client.post(
                        "/send-message",
                        json={"receiver_id": b, "content": "to everyone", "client_id": fan_out.tag},
                        headers={"Cookie": cookies[a]},
                    )
                    response.raise_for_status()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(fan_out.done.wait(), 120)
                fan_out_ms = round((fan_out.last_arrival - sent) * 1000, 1) if fan_out.arrived else None
                spread = fan_out.percentiles(sent)
                # the worker's CPU time for the send and the fan-out: less at the mercy of a shared machine's load
                spread["fan_out_server_cpu_ms"] = round((probes.cpu_seconds(pid) - cpu_before) * 1000, 1)
        finally:
            await rt.close_all(sockets)
        self.record(
            server.name,
            5,
            "idle",
            wanted=wanted,
            opened=len(sockets),
            open_errors=errors[:3],
            open_seconds=round(open_seconds, 1),
            rss_before_kib=rss_before,
            rss_after_kib=rss_after,
            kib_per_socket=round((rss_after - rss_before) / len(sockets), 1) if sockets else None,
            fan_out_delivered=fan_out.arrived,
            # sockets the server closed (or lost) before the message reached them, and why
            fan_out_closed_early=fan_out.closed_early,
            **({"fan_out_close_reasons": dict(fan_out.close_reasons)} if fan_out.close_reasons else {}),
            fan_out_ms=fan_out_ms,
            **spread,
            **({"traced_kib_per_socket": traced} if isinstance(traced, dict) else {}),
        )

    async def _trace(self, pid: int, before: object = None) -> object:
        """With BENCH_TRACEMALLOC (the server is bench/traced.py): take the server's snapshot; the second call returns
        what grew by package (bytes), as bench/traced.py wrote it."""
        if not os.environ.get("BENCH_TRACEMALLOC"):
            return None
        _forget_trace(pid)
        os.kill(pid, signal.SIGUSR1)
        if before is None:
            await asyncio.sleep(5)
            return True
        for _ in range(600):
            await asyncio.sleep(0.5)
            grown = _read_trace(pid)
            if grown is not None:
                return grown
        return None

    async def channel(self, server: BenchServer, cookies: dict[int, str]) -> None:
        """Scenario 7: a channel of `channel_members`, each member with a socket, messages at a fixed rate."""
        members = list(range(1, self.options.channel_members + 1))
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
            response = await client.post(
                "/rooms",
                json={"name": f"bench-{uuid.uuid4().hex[:8]}", "member_ids": members[1:]},
                headers={"Cookie": cookies[members[0]]},
            )
            response.raise_for_status()
        channel = await rt.open_channel(server.ws_url, response.json()["room"], cookies, members)
        try:
            mark = self._server_cpu(server)
            result = await rt.channel_loop(channel, self.options.channel_rate, self.options.channel_seconds)
            result["server_cpu_pct"] = self._cpu_pct(mark)
        finally:
            await rt.close_all(channel.sockets)
        self.record(server.name, 7, "channel", **result)
        log(server.name, f"channel: {result}")

    async def all(self) -> None:
        """Every server, `rounds` times; each round in the reverse order of the one before (A B, B A, A B, ...)."""
        for number in range(self.options.rounds):
            self.round = number
            servers = self.options.servers if number % 2 == 0 else self.options.servers[::-1]
            for name in servers:
                if self.options.rounds > 1:
                    log(f"round {self.round + 1} of {self.options.rounds}: {name}")
                await self.bench(name)

    def write(self) -> tuple[Path, str]:
        results = ROOT / self.options.results_dir
        results.mkdir(parents=True, exist_ok=True)
        path = results / f"{self.run_id}.jsonl"
        machine = self.machine()
        with path.open("w") as out:
            out.write(json.dumps({"machine": machine}) + "\n")
            for entry in self.records:
                out.write(json.dumps(entry) + "\n")
        return path, report.table(self.records, machine)


def _trace_path(pid: int) -> Path:
    return Path(tempfile.gettempdir()) / f"traced-{pid}.txt"  # bench/traced.py writes it


def _forget_trace(pid: int) -> None:
    _trace_path(pid).unlink(missing_ok=True)


def _read_trace(pid: int) -> dict[str, int] | None:
    path = _trace_path(pid)
    if not path.exists() or not path.read_text().endswith("\n"):
        return None
    rows = [line.split("\t") for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return {row[0]: int(row[1]) for row in rows}


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    procs.pin_self(procs.LOADGEN_CPU)
    options.nice = procs.set_niceness(options.nice)
    # the client holds one descriptor per socket, and so does the server (a child: it inherits the limit)
    limit = procs.raise_fd_limit(max(options.idle_sockets, options.idle_sockets_threading) + 1024)
    if limit < options.idle_sockets + 256:
        options.idle_sockets = max(10, limit - 256)
        log(f"open-file limit is {limit}: idle sockets capped at {options.idle_sockets}")
    httpload.wrk_path()
    with tempfile.TemporaryDirectory(prefix="chat-bench-") as tmp:
        run = Run(options, Path(tmp))
        asyncio.run(run.all())
        path, table = run.write()
    print(table)
    log(f"raw results: {path}")
    return 0
