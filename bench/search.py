"""Search at scale (issue 15): `python -m bench.search` (or `make bench-search`).

On SQLite and on PostgreSQL, each in a fresh database of its own:
1. N messages (default 1 M, BENCH_SEARCH_MESSAGES) are inserted by batched raw INSERTs, as the server's writer
   does, with the search migration already applied, so the triggers (SQLite) or the generated column (PostgreSQL)
   index them on the way in; their words are drawn from a vocabulary with Zipf-like frequencies.
2. Search latency: 20 query words, from the most frequent to ones seen in a handful of messages, each asked
   BENCH_SEARCH_ROUNDS times through chat.search.search (the HTTP handler's own call) by a user in 99 rooms
   (2 % of the messages are theirs).
3. Send cost: BENCH_SEARCH_SENDS POST /send-message from 8 concurrent connections to a real hypercorn process
   (one worker), on a database at the schema before search (0001) and on one after it (0002), three rounds
   alternating, in the same run: the best throughput of each and their ratio.

Prints one JSON object per database. PostgreSQL: BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from tortoise import Tortoise
from tortoise.connection import get_connection
from tortoise.migrations.executor import MigrationExecutor, MigrationTarget

from chat import db, search
from chat.config import load_settings
from chat.rooms import room_for

from .servers import ROOT, Server, hypercorn_cmd
from .stats import latency_summary

MESSAGES = int(os.environ.get("BENCH_SEARCH_MESSAGES", "1000000"))
ROUNDS = int(os.environ.get("BENCH_SEARCH_ROUNDS", "20"))
SENDS = int(os.environ.get("BENCH_SEARCH_SENDS", "2000"))
SEND_CONNECTIONS = 8
PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
USERS = 100
VOCABULARY = 20_000
WORDS_PER_MESSAGE = 12
BATCH = 1000
CHECKPOINT_EVERY = 20 * BATCH
SEED = 15


def vocabulary() -> list[str]:
    rng = random.Random(SEED)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = {"".join(rng.choice(letters) for _ in range(rng.randint(4, 10))) for _ in range(VOCABULARY * 2)}
    return sorted(words)[:VOCABULARY]


def zipf_cumulative(size: int) -> list[float]:
    """Cumulative weights 1/rank: random.choices computes them on every call when given plain weights."""
    return list(itertools.accumulate(1 / (rank + 1) for rank in range(size)))


def query_words(words: list[str]) -> list[str]:
    """20 words from the most frequent (about 1 in 10 words) down to the rare tail."""
    ranks = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 3000, 5000, 8000, 10000, 13000, 16000, 18000, 19999]
    return [words[rank] for rank in ranks]


PG_DATABASES = ("corpus", "initial", "search")


def psql(sql: str) -> None:
    admin = PG_URL.replace("postgres://", "postgresql://") + "/postgres"
    subprocess.run(["psql", admin, "-qAt", "-c", sql], check=True, capture_output=True)


def database(kind: str, workdir: Path, name: str) -> str:
    if kind == "sqlite":
        return f"sqlite://{workdir / f'{name}.sqlite3'}"
    psql(f"DROP DATABASE IF EXISTS chat_bench_search_{name} WITH (FORCE)")
    psql(f"CREATE DATABASE chat_bench_search_{name}")
    return f"{PG_URL}/chat_bench_search_{name}"


async def open_database(url: str, workdir: Path, up_to: str | None = None) -> None:
    settings = load_settings(instance_path=workdir / "instance", database_url=url, migrate=True)
    config = db.tortoise_config(settings)
    await Tortoise.init(config=config, _enable_global_fallback=True)
    executor = MigrationExecutor(get_connection("default"), config["apps"])
    await executor.migrate([MigrationTarget(app_label="models", name=up_to)] if up_to else None)


async def add_users(connection) -> None:
    mark = db.param_prefix()
    for user in range(1, USERS + 1):
        await connection.execute_query(
            f"INSERT INTO users (username, username_key, email, password_hash, created_at)"  # noqa: S608
            f" VALUES ({mark}1, {mark}1, {mark}2, 'x', {mark}3)",
            [f"user{user}", f"user{user}@example.org", datetime.now(UTC)],
        )


async def seed(count: int, words: list[str]) -> float:
    """count messages between random pairs of the users; returns the seconds taken."""
    connection = get_connection("default")
    await add_users(connection)
    rng = random.Random(SEED)
    weights = zipf_cumulative(len(words))
    mark = db.param_prefix()
    columns = ("sender_id", "receiver_id", "room", "content", "timestamp", "client_id")
    sqlite = mark == "?"
    started = time.perf_counter()
    done = 0
    now = datetime.now(UTC)
    while done < count:
        size = min(BATCH, count - done)
        values, rows = [], []
        for number in range(size):
            sender, receiver = rng.sample(range(1, USERS + 1), 2)  # every pair alike: user 1 is in 99 rooms
            first = number * len(columns) + 1
            rows.append("(" + ", ".join(f"{mark}{first + i}" for i in range(len(columns))) + ")")
            content = " ".join(rng.choices(words, cum_weights=weights, k=WORDS_PER_MESSAGE))
            values += [sender, receiver, room_for(sender, receiver), content, now, None]
        await connection.execute_query(
            f"INSERT INTO messages ({', '.join(columns)}) VALUES {', '.join(rows)}",  # noqa: S608 - markers only
            values,
        )
        done += size
        if sqlite and done % CHECKPOINT_EVERY == 0:
            # the server checkpoints the WAL from a thread of its own (db.WalCheckpointer); here, in line
            await connection.execute_query("PRAGMA wal_checkpoint(TRUNCATE)")
    await connection.execute_query("PRAGMA wal_checkpoint(TRUNCATE)" if sqlite else "ANALYZE messages")
    return time.perf_counter() - started


async def latencies(words: list[str]) -> dict:
    timings: list[float] = []
    found = {}
    for word in query_words(words):
        query = search.parse_query(word)
        for _ in range(ROUNDS):
            started = time.perf_counter()
            messages, _ = await search.search(1, query)
            timings.append(time.perf_counter() - started)
        found[word] = len(messages)
    return {**latency_summary(timings, "search_"), "results_per_word": found}


def send_rate(url: str, workdir: Path, name: str) -> float:
    """POST /send-message a second through a real hypercorn process (one worker) on this database."""
    env = {
        "CHAT_INSTANCE_PATH": str(workdir / f"instance-{name}"),
        "CHAT_DATABASE_URL": url,
        "CHAT_MIGRATE": "false",  # the database is at `name` already: 0001 (no index) or 0002 (search)
        "CHAT_COOKIE_SECURE": "false",
        "CHAT_SECRET_KEY": "bench search secret key, not a real one",
        "CHAT_BCRYPT_ROUNDS": "4",
        "CHAT_SEND_LIMIT": "1000000",
        "CHAT_REGISTER_ADDRESS_LIMIT": "1000000",
    }
    server = Server(f"send-{name}", hypercorn_cmd("chat:create_app()", None), env, ROOT, workdir).start()
    try:
        return asyncio.run(_send(server.base_url, name))
    finally:
        server.stop()


async def _send(base_url: str, name: str) -> float:
    rng = random.Random(name)
    words = vocabulary()
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        tag = f"{name.split('_')[0]}{rng.randrange(10**9)}"
        for who in ("a", "b"):
            body = {"username": f"{who}{tag}", "email": f"{who}{tag}@example.org", "password": "bench password 1"}
            await client.post("/register", json=body)
        receiver = (await client.post("/login", json={**body, "username": f"b{tag}"})).json()["id"]
        await client.post("/login", json={"username": f"a{tag}", "password": "bench password 1"})
        contents = [" ".join(rng.choices(words, k=WORDS_PER_MESSAGE)) for _ in range(SENDS)]
        queue = iter(contents)

        async def sender() -> None:
            for content in queue:
                answer = await client.post("/send-message", json={"receiver_id": receiver, "content": content})
                assert answer.status_code == 201, answer.text

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(SEND_CONNECTIONS)))
        return SENDS / (time.perf_counter() - started)


async def run(kind: str, workdir: Path) -> dict:
    words = vocabulary()
    await open_database(database(kind, workdir, "corpus"), workdir)
    seeded = await seed(MESSAGES, words)
    result = {"database": kind, "messages": MESSAGES, "seed_seconds": round(seeded, 1), **await latencies(words)}
    await Tortoise.close_connections()
    # send cost through the server, with and without the index, alternating rounds on two fresh databases
    rates: dict[str, list[float]] = {"0003_account_lifecycle": [], "0004_search": []}
    urls = {name: database(kind, workdir, name.split("_")[1]) for name in rates}
    for name, url in urls.items():
        await open_database(url, workdir, name)
        await Tortoise.close_connections()
    for _ in range(3):
        for name, url in urls.items():
            rates[name].append(await asyncio.to_thread(send_rate, url, workdir, name))
    without, with_index = max(rates["0003_account_lifecycle"]), max(rates["0004_search"])
    result.update(
        sends_per_second_without_index=round(without),
        sends_per_second_with_index=round(with_index),
        send_ratio=round(with_index / without, 3),
    )
    return result


def main() -> None:
    kinds = sys.argv[1:] or ["sqlite", "postgres"]
    with tempfile.TemporaryDirectory(prefix="chat-bench-search-") as folder:
        for kind in kinds:
            try:
                print(json.dumps(asyncio.run(run(kind, Path(folder)))), flush=True)
            finally:
                if kind == "postgres":
                    for name in PG_DATABASES:
                        psql(f"DROP DATABASE IF EXISTS chat_bench_search_{name} WITH (FORCE)")


if __name__ == "__main__":
    main()
