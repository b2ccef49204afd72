"""1 worker against 2 on PostgreSQL + Redis: `POST /send-message` throughput, side by side in one run.

    .venv/bin/python -m bench.workers [--seconds 10] [--connections 32] [--users 40]

What the scale-out configuration buys on this machine. Unlike the main harness the server is not pinned: two
workers need both cores, so they share CPU 1 with wrk (pinned there; its CPU use is reported). Each run gets a
fresh PostgreSQL database and Redis prefix; bcrypt is lowered to cost 4 for the sign-ups (sends are measured,
not logins).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from testkit.probes import wait_until
from testkit.servers import Server

from .httpload import run_wrk
from .servers import exactly_env

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PG = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def psql(sql: str) -> None:
    subprocess.run(["psql", f"{PG}/postgres", "-qAt", "-c", sql], check=True, capture_output=True)


def broker_ok(base_url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(base_url + "/healthz", timeout=2).json().get("broker") == "ok"
    return False


@contextlib.contextmanager
def chat_on_postgres(workers: int, workdir: Path):
    database = f"chat_bench_{uuid.uuid4().hex[:8]}"
    psql(f"CREATE DATABASE {database}")
    env = {
        "CHAT_DATABASE_URL": f"{PG.replace('postgresql://', 'postgres://')}/{database}",
        "CHAT_BROKER_URL": REDIS,
        "CHAT_REDIS_PREFIX": f"{database}:",
        "CHAT_SECRET_KEY": "bench",
        "CHAT_COOKIE_SECURE": "false",
        "CHAT_BCRYPT_ROUNDS": "4",
        "CHAT_SEND_LIMIT": "1000000",
        "CHAT_WS_FRAME_RATE": "1000000",
        "CHAT_INSTANCE_PATH": str(workdir / f"instance-{workers}"),
    }
    server = Server(
        workdir,
        env,
        workers=workers,
        extra_args=["--worker-class", "uvloop"],
        name=f"chat-{workers}",
        settings=exactly_env,
    )
    try:
        server.start(timeout=60)
        wait_until(lambda: broker_ok(server.base_url), timeout=60, what=server.log)
        yield server.base_url
    finally:
        server.stop(timeout=30)
        psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def signed_in_pairs(base_url: str, users: int) -> list[tuple[str, int]]:
    """(cookie, the other person's id) for `users` people in pairs."""
    people = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for index in range(users):
            name = f"user{index}"
            body = {"username": name, "email": f"{name}@example.org", "password": "bench password"}
            user = client.post("/register", json=body).json()
            response = client.post("/login", json={"username": name, "password": "bench password"})
            people.append((f"chat_session={response.cookies['chat_session']}", user["id"]))
    return [(cookie, people[index ^ 1][1]) for index, (cookie, _) in enumerate(people)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--users", type=int, default=40)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for workers in (1, 2):
            with chat_on_postgres(workers, workdir) as base_url:
                clients = signed_in_pairs(base_url, args.users)
                wrk_env = {"BENCH_PREFIX": f"w{workers}", "BENCH_WRK_IDS": str(workdir / f"ids-{workers}.txt")}
                result = run_wrk(base_url, "send.lua", args.seconds, args.connections, clients, workdir, wrk_env)
                rows.append({"workers": workers, **result})
    with open(RESULTS / f"workers-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.jsonl", "w") as out:
        out.writelines(json.dumps(row) + "\n" for row in rows)
    print("| workers (PostgreSQL + Redis) | send 2xx req/s | p50 ms | p99 ms | non-2xx | wrk CPU % |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['workers']} | {row['ok_per_s']:,.0f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} "
            f"| {row['not_ok']} | {row['client_cpu_pct']} |"
        )
    print(f"\n2 workers ÷ 1: {rows[1]['ok_per_s'] / rows[0]['ok_per_s']:.2f}×")


if __name__ == "__main__":
    main()
