"""Database set-up: the Tortoise configuration, start-up migrations under a lock, and shut-down."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import asyncpg
from tortoise import Tortoise
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.connection import get_connection
from tortoise.migrations.executor import MigrationExecutor

from .config import Settings
from .instance import PRIVATE_FOLDER, private_file, private_sqlite_file

log = logging.getLogger(__name__)

APP_LABEL = "models"
# SQLite: concurrent readers with one writer (WAL), fsync at checkpoints only (NORMAL is safe with WAL),
# and wait for a lock rather than fail at once; what still meets a lock becomes a 503. Checkpoints are not made
# by the commit that fills the WAL (wal_autocheckpoint=0) but by WalCheckpointer, off the requests' path. The WAL
# file keeps its size once checkpointed (up to 64 MiB; Tortoise's default cuts it to 16 KiB each time): appends
# then overwrite blocks already allocated instead of growing the file, which on a busy disk waited for the
# filesystem's journal (single inserts of 120 ms measured).
SQLITE_PRAGMAS = {
    "journal_mode": "WAL",
    "synchronous": "NORMAL",
    "busy_timeout": 5000,
    "foreign_keys": "ON",
    "wal_autocheckpoint": 0,
    "journal_size_limit": 64 * 1024 * 1024,
}
CHECKPOINT_SECONDS = 1.0
# A fixed key for pg_advisory_lock: serialises migrations between workers and machines.
PG_MIGRATION_LOCK_KEY = 0x63686174  # "chat"


def tortoise_config(settings: Settings) -> dict:
    url = settings.resolved_database_url
    if url.startswith("sqlite://") and url != "sqlite://:memory:":
        path = private_sqlite_file(Path(url.removeprefix("sqlite://").split("?", 1)[0]))
        url = f"sqlite://{path}?{urlencode(SQLITE_PRAGMAS)}"
    connection: str | dict = url
    if settings.is_postgres:
        connection = expand_db_url(url)
        connection["credentials"].update(minsize=1, maxsize=settings.db_pool_size, connection_class=PooledConnection)
    return {
        "connections": {"default": connection},
        "apps": {
            APP_LABEL: {
                "models": ["chat.models"],
                "default_connection": "default",
                "migrations": "migrations",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


class PooledConnection(asyncpg.Connection):
    """A connection of the PostgreSQL pool, returned to it without asyncpg's reset query.

    asyncpg runs `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` each time a connection goes
    back to the pool: a second round trip for every query Tortoise makes outside a transaction, and for every
    transaction (~5 % of a PostgreSQL + Redis worker's samples under the send bench, docs/performance.md part 8).
    chat leaves nothing for it to undo: its advisory locks are transaction-scoped (pg_advisory_xact_lock; the
    migration lock has a connection of its own), and it never LISTENs, SETs a session variable or holds a cursor
    past a transaction. An open transaction is still rolled back (asyncpg does that before asking for this query).
    """

    def get_reset_query(self) -> str:
        return ""


class WalCheckpointer:
    """Copies SQLite's write-ahead log back into the database file every second, from a thread of its own.

    SQLite's automatic checkpoint runs inside the commit that takes the WAL past 1000 pages, fsync included:
    20-40 ms here (more on a busy disk) during which that connection, so every query of this process, waits.
    A PASSIVE checkpoint on another connection blocks neither writers nor readers.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)

    def start(self) -> WalCheckpointer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as connection:
            while not self._stop.wait(CHECKPOINT_SECONDS):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the next round tries again; the WAL only grows meanwhile
                    log.warning("WAL checkpoint failed: %s", exc)


class LoopReads:
    """Short reads of SQLite (one range of an index: a history page, a replay batch) on a connection of the event
    loop's own, at once, instead of through Tortoise's connection, whose every query is a hop to aiosqlite's
    thread and back: that hop cost ~250 µs of a history page's ~680 (docs/performance.md, part 5), more than the
    read itself. With WAL a reader never waits for the writer, so the read does not wait for a lock either: its
    busy timeout is 0, and a read that meets one anyway (a WAL being recovered) goes Tortoise's way instead.
    Each read is its own transaction, so it sees everything committed before it, as a read through Tortoise would.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None

    def rows(self, sql: str, values: list) -> list[tuple] | None:
        """The rows; None when SQLite could not answer at once."""
        try:
            if self._connection is None:
                self._connection = sqlite3.connect(self.path, timeout=0, isolation_level=None)
                self._connection.execute("PRAGMA query_only = ON")
            return self._connection.execute(sql, values).fetchall()
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):  # and their extended codes
                return None
            raise

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


async def select(sql: str, values: list) -> list:
    """The rows of a short read (see LoopReads): on the event loop's SQLite connection when it answers at once,
    else (PostgreSQL, a lock) through Tortoise's connection. Not inside a transaction: it would not see its
    writes."""
    rows = _loop_reads[0].rows(sql, values) if _loop_reads else None
    if rows is None:
        _, rows = await get_connection("default").execute_query(sql, values)
    return rows


# one ORM per process (Tortoise is global), so one checkpointer and one loop connection per process
_checkpointers: list[WalCheckpointer] = []
_loop_reads: list[LoopReads] = []


async def init_db(settings: Settings) -> None:
    """Connect (and, unless told not to, migrate) for the serving process."""
    config = tortoise_config(settings)
    # Requests run in tasks other than the one serving the lifespan: they find the ORM via the global context.
    await Tortoise.init(config=config, _enable_global_fallback=True)
    if settings.migrate:
        await migrate(settings, config)
    if settings.sqlite_path is not None:
        _checkpointers.append(WalCheckpointer(settings.sqlite_path).start())
        _loop_reads.append(LoopReads(settings.sqlite_path))


async def close_db() -> None:
    while _loop_reads:
        _loop_reads.pop().close()
    while _checkpointers:
        await asyncio.to_thread(_checkpointers.pop().stop)
    await Tortoise.close_connections()


async def migrate(settings: Settings, config: dict | None = None) -> None:
    """Apply pending migrations; safe when several workers start at once on a fresh database."""
    config = config or tortoise_config(settings)
    async with migration_lock(settings):
        executor = MigrationExecutor(get_connection("default"), config["apps"])
        await executor.migrate()


@contextlib.asynccontextmanager
async def migration_lock(settings: Settings) -> AsyncIterator[None]:
    if settings.is_postgres:
        async with _pg_advisory_lock(settings.resolved_database_url):
            yield
    elif settings.sqlite_path is not None:
        async with _file_lock(settings.sqlite_path.with_name(settings.sqlite_path.name + ".migrate.lock")):
            yield
    else:  # in-memory SQLite: one process by definition
        yield


@contextlib.asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[None]:
    path.parent.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
    with open(private_file(path), "a+") as handle:  # noqa: ASYNC230 - opening a lock file does not block
        # flock blocks: wait for it in a thread so the event loop stays free
        await asyncio.to_thread(fcntl.flock, handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.asynccontextmanager
async def _pg_advisory_lock(url: str) -> AsyncIterator[None]:
    parts = urlsplit(url)
    dsn = parts._replace(scheme="postgresql", query="").geturl()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", PG_MIGRATION_LOCK_KEY)
        yield
    finally:
        with contextlib.suppress(Exception):
            await conn.execute("SELECT pg_advisory_unlock($1)", PG_MIGRATION_LOCK_KEY)
        await conn.close()


async def ping() -> bool:
    try:
        await get_connection("default").execute_query("SELECT 1")
    except Exception:  # any failure means "not answering", which /healthz reports
        log.warning("database ping failed", exc_info=True)
        return False
    return True


def param_prefix() -> str:
    """What a numbered parameter marker of raw SQL starts with on the active backend: ? (SQLite), $ (asyncpg)."""
    return "$" if get_connection("default").capabilities.dialect == "postgres" else "?"


def param(number: int) -> str:
    """The numbered parameter marker of raw SQL on the active backend: ?N for SQLite, $N for asyncpg."""
    return f"{param_prefix()}{number}"


def params(first: int, last: int) -> str:
    """The markers `first` to `last` (inclusive), comma-separated, for an IN (...) list: the backend asked once."""
    mark = param_prefix()
    return ", ".join(f"{mark}{number}" for number in range(first, last + 1))


def __getattr__(name: str) -> dict:
    # For Tortoise's own CLI: `tortoise -c chat.db.TORTOISE_ORM makemigrations` (built on access, from the env).
    if name == "TORTOISE_ORM":
        from .config import load_settings

        return tortoise_config(load_settings())
    raise AttributeError(name)
