"""1 worker against 2 (hypercorn --workers N on one machine): `POST /send-message` throughput, side by side.

    .venv/bin/python -m bench.workers [--rounds 3] [--seconds 10] [--warmup 3] [--connections 32] [--users 40]
                                      [--configs postgres,sqlite] [--chat-sources LABEL=DIR ...]

Two configurations, each with Redis as the broker: PostgreSQL, and SQLite (one file shared by the workers of one
machine). What the extra worker buys on this machine, measured fairly: the same load (users, connections,
seconds, the same Lua script, after the same warm-up) against every server; each run on a fresh database and
Redis prefix; the two worker counts interleaved in rounds, the order flipped every round (1 then 2, 2 then 1,
...), so that a drift in the machine's other load weighs on both; the ratio is given per round and as the median.

Unlike the main harness the server is not pinned: two workers need both cores, so they share CPU 1 with wrk
(pinned there; its CPU use is reported). So are PostgreSQL's and Redis's CPU and the whole machine's busy time:
on a machine of 2 cores they share the cores with the workers, and what they take the second worker cannot
have. As root, wrk and the servers run at niceness -20 (their sessions' autogroups too, as in the main
harness), so that other work on a shared machine weighs less. bcrypt is lowered to cost 4 for the sign-ups
(sends are measured, not logins). After each run the stored messages are counted: every 2xx answer must be one
stored row, and no client_id acknowledged twice.

`--chat-sources before=DIR` runs another tree of chat (`git worktree add DIR REV`) beside this one, as `make bench`
does: every round runs each tree with 1 and 2 workers, the trees' order flipped every round too, and the table
gives each tree's figures and, per worker count, this tree's req/s over the other's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

from testkit.probes import cpu_seconds, descendants, wait_until
from testkit.servers import Server

from . import procs
from .httpload import run_wrk
from .servers import CHAT, chat_sources, exactly_env

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PG = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# the processes of this machine's PostgreSQL and Redis (its services, shared by every run)
SERVICES = {"postgres", "redis-server"}
CONFIGS = {"postgres": "PostgreSQL + Redis", "sqlite": "SQLite + Redis"}


def psql(sql: str, database: str = "postgres") -> str:
    out = subprocess.run(["psql", f"{PG}/{database}", "-qAt", "-c", sql], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def broker_ok(base_url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(base_url + "/healthz", timeout=2).json().get("broker") == "ok"
    return False


class Chat:
    """One server under test: `workers` hypercorn workers on a fresh database of `config` and a fresh Redis prefix."""

    def __init__(self, config: str, workers: int, workdir: Path, source: Path = ROOT) -> None:
        self.config, self.workers = config, workers
        self.tag = f"chat_bench_{uuid.uuid4().hex[:8]}"
        self.sqlite_path = workdir / f"{self.tag}.sqlite3"
        if config == "postgres":
            psql(f"CREATE DATABASE {self.tag}")
            database_url = f"{PG.replace('postgresql://', 'postgres://')}/{self.tag}"
        else:
            database_url = f"sqlite://{self.sqlite_path}"
        env = {
            "CHAT_DATABASE_URL": database_url,
            "CHAT_BROKER_URL": REDIS,
            "CHAT_REDIS_PREFIX": f"{self.tag}:",
            "CHAT_SECRET_KEY": "bench",
            "CHAT_COOKIE_SECURE": "false",
            "CHAT_BCRYPT_ROUNDS": "4",
            "CHAT_REGISTER_ADDRESS_LIMIT": "100000",  # every sign-up comes from 127.0.0.1
            "CHAT_SEND_LIMIT": "1000000",
            "CHAT_WS_FRAME_RATE": "1000000",
            "CHAT_INSTANCE_PATH": str(workdir / f"instance-{self.tag}"),
            "PYTHONUNBUFFERED": "1",  # the server's log is whole even if it has to be killed
        }
        # as `make run` and hypercorn.toml serve it (the uvloop worker class), without an access log like `make bench`
        self.server = Server(
            workdir,
            env,
            workers=workers,
            extra_args=["--worker-class", "uvloop"],
            name=f"{self.tag}-{workers}",
            settings=exactly_env,
            cwd=source,  # the tree whose chat/ is served
        )

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server's processes (hypercorn's master and its workers)."""
        pids = [self.server.proc.pid, *descendants(self.server.proc.pid)]
        return sum(cpu_seconds(pid) for pid in pids)

    def stored_messages(self) -> int:
        sql = "SELECT count(*) FROM messages"
        if self.config == "postgres":
            return int(psql(sql, self.tag))
        with contextlib.closing(sqlite3.connect(self.sqlite_path)) as connection:
            return connection.execute(sql).fetchone()[0]

    def drop(self) -> None:
        if self.config == "postgres":
            psql(f"DROP DATABASE IF EXISTS {self.tag} WITH (FORCE)")
        else:
            for path in self.sqlite_path.parent.glob(self.sqlite_path.name + "*"):
                path.unlink()


@contextlib.contextmanager
def serving(config: str, workers: int, workdir: Path, source: Path = ROOT) -> Iterator[Chat]:
    chat = Chat(config, workers, workdir, source)
    try:
        chat.server.start(wait=False)
        procs.set_niceness(os.getpriority(os.PRIO_PROCESS, 0), chat.server.proc.pid)  # its session: as bench/run.py
        # generous: on a machine shared with other work, a start (imports, migrations) took 40-90 s at times
        chat.server.wait_ready(timeout=300)
        wait_until(lambda: broker_ok(chat.server.base_url), timeout=60, what=chat.server.log)
        yield chat
    finally:
        chat.server.stop(timeout=30)
        chat.drop()


def services_cpu_seconds() -> float:
    """CPU time used so far by this machine's PostgreSQL and Redis processes (SQLite runs inside the workers)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):  # a process gone between the listing and the read
            if (entry / "comm").read_text().strip() in SERVICES:
                total += cpu_seconds(int(entry.name))
    return total


def machine_busy_seconds() -> float:
    """CPU time the machine's cores have spent busy so far, all processes (/proc/stat: all but idle and iowait)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def signed_in_pairs(base_url: str, users: int) -> list[tuple[str, int]]:
    """(cookie, the other person's id) for `users` people in pairs."""
    people = []
    for index in range(users):
        # a client of its own each: a sign-in over another person's session cookie replaces (revokes) that session
        with httpx.Client(base_url=base_url, timeout=30) as client:
            name = f"user{index}"
            body = {"username": name, "email": f"{name}@example.org", "password": "bench password"}
            user = client.post("/register", json=body).raise_for_status().json()
            response = client.post("/login", json={"username": name, "password": "bench password"}).raise_for_status()
            people.append((f"chat_session={response.cookies['chat_session']}", user["id"]))
    return [(cookie, people[index ^ 1][1]) for index, (cookie, _) in enumerate(people)]


def one_run(
    config: str, workers: int, round_: int, args: argparse.Namespace, workdir: Path, server: str, source: Path
) -> dict:
    with serving(config, workers, workdir, source) as chat:
        clients = signed_in_pairs(chat.server.base_url, args.users)
        if args.warmup:  # every worker's first requests (connections to the database and Redis) are not measured
            warm_env = {"BENCH_PREFIX": "warm", "BENCH_WRK_IDS": str(workdir / f"warm-{chat.tag}.txt")}
            run_wrk(chat.server.base_url, "send.lua", args.warmup, args.connections, clients, workdir, warm_env)
        before = chat.stored_messages()
        ids = workdir / f"ids-{chat.tag}.txt"
        wrk_env = {"BENCH_PREFIX": f"w{workers}", "BENCH_WRK_IDS": str(ids)}
        cpu_before, services_before, busy_before = chat.cpu_seconds(), services_cpu_seconds(), machine_busy_seconds()
        wall_before = time.perf_counter()
        result = run_wrk(chat.server.base_url, "send.lua", args.seconds, args.connections, clients, workdir, wrk_env)
        wall = time.perf_counter() - wall_before
        # what the machine gave the workers: a second worker helps only if it gets a core's time of its own, and
        # PostgreSQL and Redis take theirs from the same cores
        result["server_cpu_pct"] = round(100 * (chat.cpu_seconds() - cpu_before) / wall)
        result["services_cpu_pct"] = round(100 * (services_cpu_seconds() - services_before) / wall)
        result["machine_busy_pct"] = round(100 * (machine_busy_seconds() - busy_before) / wall)
        acknowledged = ids.read_text().splitlines()
        stored = chat.stored_messages() - before
    # every acknowledged send is one stored row: none lost, none doubled (wrk's last, unanswered requests may
    # add rows beyond the acknowledged ones, never fewer)
    exact = len(set(acknowledged)) == len(acknowledged) <= stored
    return {
        "server": server, "config": config, "workers": workers, "round": round_, "stored": stored, "exact": exact,
        **result,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3, help="seconds of the same load before each measured run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--nice", type=int, default=-20, help="as root: the niceness of wrk and the servers")
    parser.add_argument("--configs", default="postgres,sqlite", help="comma-separated: postgres, sqlite")
    parser.add_argument(
        "--chat-sources", nargs="*", default=[], help="LABEL=DIR: another tree of chat, run beside this one"
    )
    args = parser.parse_args()
    configs = [name for name in args.configs.split(",") if name]
    if not set(configs) <= set(CONFIGS):
        parser.error(f"--configs: {args.configs!r}; known: {', '.join(CONFIGS)}")
    try:
        sources = chat_sources(tuple(args.chat_sources))
    except ValueError as exc:
        parser.error(str(exc))
    RESULTS.mkdir(parents=True, exist_ok=True)
    nice = procs.set_niceness(args.nice)  # wrk and, above, each server's session: other work disturbs them less
    out_path = RESULTS / f"workers-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.jsonl"
    rows = []
    with tempfile.TemporaryDirectory() as tmp, open(out_path, "w") as out:
        for round_ in range(1, args.rounds + 1):
            for config in configs:
                for server, source in sources.items() if round_ % 2 else reversed(sources.items()):
                    for workers in (1, 2) if round_ % 2 else (2, 1):
                        row = one_run(config, workers, round_, args, Path(tmp), server, source)
                        out.write(json.dumps(row) + "\n")
                        out.flush()
                        rows.append(row)
                        print(
                            f"round {round_} {server} {CONFIGS[config]} {workers} worker(s):"
                            f" {row['ok_per_s']:,.0f} req/s"
                        )
    report(rows, configs, list(sources), args.rounds)
    print(f"\nniceness {nice}; raw results: {out_path.relative_to(ROOT)}")


def report(rows: list[dict], configs: list[str], servers: list[str], rounds: int) -> None:
    print()
    print(
        "| server | configuration | round | 1 worker req/s | 2 workers req/s | 2 ÷ 1 | p99 ms (1 / 2) "
        "| server CPU % (1 / 2) | PostgreSQL + Redis CPU % (1 / 2) | wrk CPU % (1 / 2) "
        f"| machine busy % of {100 * os.cpu_count()} (1 / 2) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")

    def run(server: str, config: str, workers: int, round_: int) -> dict:
        return next(
            r for r in rows if (r["server"], r["config"], r["workers"], r["round"]) == (server, config, workers, round_)
        )

    for config in configs:
        for server in servers:
            ratios = []
            for round_ in range(1, rounds + 1):
                one, two = run(server, config, 1, round_), run(server, config, 2, round_)
                ratio = two["ok_per_s"] / one["ok_per_s"]
                ratios.append(ratio)
                print(
                    f"| {server} | {CONFIGS[config]} | {round_} | {one['ok_per_s']:,.0f} | {two['ok_per_s']:,.0f} "
                    f"| {ratio:.2f}× | {one['p99_ms']:.0f} / {two['p99_ms']:.0f} "
                    f"| {one['server_cpu_pct']} / {two['server_cpu_pct']} "
                    f"| {one['services_cpu_pct']} / {two['services_cpu_pct']} "
                    f"| {one['client_cpu_pct']:.0f} / {two['client_cpu_pct']:.0f} "
                    f"| {one['machine_busy_pct']} / {two['machine_busy_pct']} |"
                )
            print(f"| {server} | {CONFIGS[config]} | median | | | {statistics.median(ratios):.2f}× | | | | | |")
        for other in servers[1:]:  # side by side: this tree over the other, per round, then the median
            for workers in (1, 2):
                ratios = [
                    run(CHAT, config, workers, r)["ok_per_s"] / run(other, config, workers, r)["ok_per_s"]
                    for r in range(1, rounds + 1)
                ]
                print(
                    f"{CONFIGS[config]}, {workers} worker(s): {CHAT} ÷ {other} {statistics.median(ratios):.2f}×"
                    f" ({' '.join(f'{ratio:.2f}' for ratio in ratios)})"
                )
    bad = [row for row in rows if not row["exact"] or row["not_ok"]]
    for row in bad:
        print(
            f"! {row['server']}, {CONFIGS[row['config']]}, {row['workers']} worker(s), round {row['round']}: "
            f"{row['not_ok']} non-2xx, exactly-once {'held' if row['exact'] else 'BROKEN'}"
        )


if __name__ == "__main__":
    main()
