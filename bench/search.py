"""Search at scale (issue 15): `python -m bench.search` (or `make bench-search`).

On SQLite and on PostgreSQL, each in a fresh database of its own:
1. N messages (default 1 M, BENCH_SEARCH_MESSAGES) are inserted by batched raw INSERTs, as the server's writer
   does, with the search migration already applied, so the triggers (SQLite) or the generated column (PostgreSQL)
   index them on the way in; their words are drawn from a vocabulary with Zipf-like frequencies.
2. Search latency: 20 query words, from the most frequent to ones seen in a handful of messages, each asked
   BENCH_SEARCH_ROUNDS times through chat.search.search (the HTTP handler's own call) by a user in 99 rooms
   (2 % of the messages are theirs).
3. Send cost: the seeded database is copied twice and one copy loses the search index (nothing else: same rows,
   schema and server settings); a real hypercorn process (one worker) serves each, both up at once. After a
   warm-up of each, BENCH_SEARCH_SEND_ROUNDS rounds of BENCH_SEARCH_SENDS POST /send-message from 8 concurrent
   connections, the order reversed every round (ABBA): the machine's changing load falls on both alike. Reported:
   each round's with / without ratio of sends a second, their median, each round's rates; and the CPU
   milliseconds a send took in the server and (PostgreSQL) its database's backends, which the machine's load
   moves far less than the rate, with their ratios.

Prints one JSON object per database. PostgreSQL: BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import shutil
import statistics
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
from testkit import probes
from testkit.servers import Server

from .stats import latency_summary

MESSAGES = int(os.environ.get("BENCH_SEARCH_MESSAGES", "1000000"))
ROUNDS = int(os.environ.get("BENCH_SEARCH_ROUNDS", "20"))
SENDS = int(os.environ.get("BENCH_SEARCH_SENDS", "300"))  # a round
SEND_ROUNDS = int(os.environ.get("BENCH_SEARCH_SEND_ROUNDS", "16"))
SEND_WARMUP = 300
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


WITH, WITHOUT = "with_index", "without_index"
SEND_VARIANTS = (WITHOUT, WITH)
PG_DATABASES = ("corpus", *SEND_VARIANTS)


def pg_name(name: str) -> str:
    """This run's database `name`: runs side by side (another engineer's, on the same server) do not meet."""
    return f"chat_bench_search_{os.getpid()}_{name}"


def psql(sql: str) -> None:
    admin = PG_URL.replace("postgres://", "postgresql://") + "/postgres"
    subprocess.run(["psql", admin, "-qAt", "-c", sql], check=True, capture_output=True)


def database(kind: str, workdir: Path, name: str) -> str:
    if kind == "sqlite":
        return f"sqlite://{workdir / f'{name}.sqlite3'}"
    psql(f"DROP DATABASE IF EXISTS {pg_name(name)} WITH (FORCE)")
    psql(f"CREATE DATABASE {pg_name(name)}")
    return f"{PG_URL}/{pg_name(name)}"


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


SEARCH_INDEX_DROPPED = {
    # what 0004_search (and 0006_search_cost) add, and nothing else: the database keeps its rows and other indexes
    "sqlite": [
        "DROP TRIGGER messages_fts_insert",
        "DROP TRIGGER messages_fts_delete",
        "DROP TRIGGER messages_fts_update",
        "DROP TABLE messages_fts",
    ],
    "postgres": ["DROP INDEX ix_messages_search", "ALTER TABLE messages DROP COLUMN search_vector"],
}


async def twin_databases(kind: str, workdir: Path) -> dict[str, str]:
    """Two copies of the seeded corpus, one without the search index: the same rows, schema and settings."""
    urls = {}
    for name in SEND_VARIANTS:
        if kind == "sqlite":
            shutil.copyfile(workdir / "corpus.sqlite3", workdir / f"{name}.sqlite3")  # checkpointed: no WAL
            urls[name] = f"sqlite://{workdir / f'{name}.sqlite3'}"
        else:
            psql(f"DROP DATABASE IF EXISTS {pg_name(name)} WITH (FORCE)")
            psql(f"CREATE DATABASE {pg_name(name)} TEMPLATE {pg_name('corpus')}")
            urls[name] = f"{PG_URL}/{pg_name(name)}"
    for name, url in urls.items():
        await open_database(url, workdir)  # at the latest migration already: nothing to apply
        connection = get_connection("default")
        if name == WITHOUT:
            for statement in SEARCH_INDEX_DROPPED[kind]:
                await connection.execute_query(statement)
        await connection.execute_query("PRAGMA wal_checkpoint(TRUNCATE)" if kind == "sqlite" else "VACUUM ANALYZE")
        await Tortoise.close_connections()
    return urls


def send_server(url: str, workdir: Path, name: str) -> Server:
    """A real hypercorn process (one worker) on this database; both servers get the same settings but the URL."""
    env = {
        "CHAT_INSTANCE_PATH": str(workdir / f"instance-{name}"),
        "CHAT_DATABASE_URL": url,
        "CHAT_MIGRATE": "false",  # both databases are at the latest migration
        "CHAT_COOKIE_SECURE": "false",
        "CHAT_SECRET_KEY": "bench search secret key, not a real one",
        "CHAT_BCRYPT_ROUNDS": "4",
        "CHAT_SEND_LIMIT": "1000000",
        "CHAT_REGISTER_ADDRESS_LIMIT": "1000000",
    }
    return Server(workdir, env, name=f"send-{name}", settings=lambda _: {}).start(timeout=120)


async def signed_in(base_url: str) -> tuple[httpx.AsyncClient, int]:
    """A client signed in as a new user, and the id of another one to write to."""
    client = httpx.AsyncClient(base_url=base_url, timeout=60)
    tag = f"s{random.randrange(10**9)}"
    for who in ("a", "b"):
        body = {"username": f"{who}{tag}", "email": f"{who}{tag}@example.org", "password": "bench password 1"}
        answer = await client.post("/register", json=body)
        assert answer.status_code == 201, answer.text
    receiver = (await client.post("/login", json={"username": f"b{tag}", "password": "bench password 1"})).json()
    await client.post("/login", json={"username": f"a{tag}", "password": "bench password 1"})
    return client, receiver["id"]


async def send_rate(client: httpx.AsyncClient, receiver: int, count: int, rng: random.Random) -> float:
    """`count` POST /send-message from SEND_CONNECTIONS concurrent requests; sends a second."""
    words = vocabulary()
    queue = iter([" ".join(rng.choices(words, k=WORDS_PER_MESSAGE)) for _ in range(count)])

    async def sender() -> None:
        for content in queue:
            answer = await client.post("/send-message", json={"receiver_id": receiver, "content": content})
            assert answer.status_code == 201, answer.text

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(SEND_CONNECTIONS)))
    return count / (time.perf_counter() - started)


def serving_cpu(server: Server, database_name: str | None) -> dict[int, float]:
    """CPU seconds so far of each process that serves sends: the server's, and on PostgreSQL the backends of its
    database (where the index is computed). Unlike the rate, the CPU a send costs barely moves with the machine's
    load."""
    pids = [server.proc.pid, *probes.descendants(server.proc.pid)]
    if database_name:
        admin = PG_URL.replace("postgres://", "postgresql://") + "/postgres"
        sql = f"SELECT pid FROM pg_stat_activity WHERE datname = '{database_name}'"  # noqa: S608 - our own name
        listed = subprocess.run(["psql", admin, "-qAt", "-c", sql], check=True, capture_output=True, text=True)
        pids += [int(pid) for pid in listed.stdout.split()]
    seconds = {}
    for pid in pids:
        with contextlib.suppress(OSError):  # a process that just ended
            seconds[pid] = probes.cpu_seconds(pid)
    return seconds


async def send_cost(kind: str, urls: dict[str, str], workdir: Path) -> dict:
    """Sends a second with and without the index: both servers up at once, a warm-up each, then SEND_ROUNDS rounds
    of SENDS each, the order reversed every round (ABBA), so that a change of the machine's load falls on both
    alike. Each round's ratio is with / without of that round; the figure is their median. Beside it, the CPU
    milliseconds a send took in the server and its database backends, each round, and their ratio."""
    servers = {name: send_server(url, workdir, name) for name, url in urls.items()}
    clients: dict[str, tuple[httpx.AsyncClient, int]] = {}
    try:
        for name, server in servers.items():
            clients[name] = await signed_in(server.base_url)
        rng = random.Random(SEED)
        for name in SEND_VARIANTS:
            await send_rate(*clients[name], SEND_WARMUP, rng)
        rates: dict[str, list[float]] = {name: [] for name in SEND_VARIANTS}
        cpu: dict[str, list[float]] = {name: [] for name in SEND_VARIANTS}
        for number in range(SEND_ROUNDS):
            for name in SEND_VARIANTS if number % 2 == 0 else reversed(SEND_VARIANTS):
                database_name = pg_name(name) if kind == "postgres" else None
                before = serving_cpu(servers[name], database_name)
                rates[name].append(await send_rate(*clients[name], SENDS, rng))
                after = serving_cpu(servers[name], database_name)
                used = sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())
                cpu[name].append(used * 1000 / SENDS)
    finally:
        for client, _ in clients.values():
            await client.aclose()
        for server in servers.values():
            server.stop()
    ratios = [with_index / without for with_index, without in zip(rates[WITH], rates[WITHOUT], strict=True)]
    cpu_ratios = [with_index / without for with_index, without in zip(cpu[WITH], cpu[WITHOUT], strict=True)]
    return {
        "sends_per_round": SENDS,
        "sends_per_second_without_index": round(statistics.median(rates[WITHOUT])),
        "sends_per_second_with_index": round(statistics.median(rates[WITH])),
        "send_ratio": round(statistics.median(ratios), 3),
        "send_ratio_per_round": [round(ratio, 3) for ratio in ratios],
        "sends_per_second_per_round": {name: [round(rate) for rate in rates[name]] for name in SEND_VARIANTS},
        "cpu_ms_per_send_without_index": round(statistics.median(cpu[WITHOUT]), 3),
        "cpu_ms_per_send_with_index": round(statistics.median(cpu[WITH]), 3),
        "cpu_ratio": round(statistics.median(cpu_ratios), 3),
        "cpu_ratio_per_round": [round(ratio, 3) for ratio in cpu_ratios],
        "load_average": [round(load, 1) for load in os.getloadavg()],
    }


async def run(kind: str, workdir: Path) -> dict:
    words = vocabulary()
    await open_database(database(kind, workdir, "corpus"), workdir)
    seeded = await seed(MESSAGES, words)
    result = {"database": kind, "messages": MESSAGES, "seed_seconds": round(seeded, 1), **await latencies(words)}
    await Tortoise.close_connections()
    result.update(await send_cost(kind, await twin_databases(kind, workdir), workdir))
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
                        psql(f"DROP DATABASE IF EXISTS {pg_name(name)} WITH (FORCE)")


if __name__ == "__main__":
    main()
