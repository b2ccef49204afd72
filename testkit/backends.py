"""The configuration under test: the embedded one (SQLite + in-process broker), or PostgreSQL + Redis.

`CHAT_TEST_BACKEND=postgres` runs the suite on PostgreSQL + Redis (`make test` runs both configurations): each work
folder gets a database and a Redis key prefix of its own, dropped by `drop_test_databases`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import subprocess
from pathlib import Path

BACKEND = os.environ.get("CHAT_TEST_BACKEND", "sqlite")
PG_URL = os.environ.get("CHAT_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("CHAT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# the migrations a database brought up to date has applied, in order
MIGRATIONS = sorted(path.stem for path in (Path(__file__).resolve().parent.parent / "migrations").glob("[0-9]*.py"))
_created_databases: dict[str, Path] = {}  # database -> the work folder it serves


def psql(sql: str, database: str = "postgres") -> None:
    subprocess.run(
        [
            "psql",
            f"{PG_URL.replace('postgres://', 'postgresql://')}/{database}",
            "-qAt",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ],
        check=True,
        capture_output=True,
    )


def backend_settings(workdir: Path) -> dict[str, str]:
    """The CHAT_* settings of the configuration under test, for a test's own work folder.

    PostgreSQL + Redis: a fresh database and Redis key prefix per folder, dropped by `drop_test_databases`.
    """
    if BACKEND != "postgres":
        return {}
    tag = "chat_test_" + hashlib.sha1(str(workdir).encode()).hexdigest()[:12]
    if tag not in _created_databases:
        psql(f"DROP DATABASE IF EXISTS {tag} WITH (FORCE)")
        psql(f"CREATE DATABASE {tag}")
        _created_databases[tag] = workdir
    return {
        "CHAT_DATABASE_URL": f"{PG_URL}/{tag}",
        "CHAT_BROKER_URL": REDIS_URL,
        "CHAT_REDIS_PREFIX": f"{tag}:",
    }


def database_rows(workdir: Path, sql: str) -> list[tuple]:
    """Rows of a query on the database of a test's work folder, read outside the server (SQLite file or psql)."""
    settings = backend_settings(workdir)
    if not settings:
        with contextlib.closing(sqlite3.connect(workdir / "instance" / "chat.sqlite3")) as connection:
            return connection.execute(sql).fetchall()
    url = settings["CHAT_DATABASE_URL"].replace("postgres://", "postgresql://")
    out = subprocess.run(["psql", url, "-qAt", "-F", "\t", "-c", sql], check=True, capture_output=True, text=True)
    return [
        tuple(int(v) if v.lstrip("-").isdigit() else v for v in line.split("\t")) for line in out.stdout.splitlines()
    ]


def drop_test_databases(under: Path | None = None) -> None:
    """Drop the databases (and Redis keys) made for work folders below `under` (all of them when None).

    A test's own folder goes when the test ends; a module-scoped server's folder lives on until the session ends.
    """
    import redis

    doomed = [tag for tag, workdir in _created_databases.items() if under is None or workdir.is_relative_to(under)]
    if not doomed:
        return
    client = redis.Redis.from_url(REDIS_URL)
    for tag in doomed:
        del _created_databases[tag]
        psql(f"DROP DATABASE IF EXISTS {tag} WITH (FORCE)")
        keys = list(client.scan_iter(match=f"{tag}:*", count=1000))
        if keys:
            client.delete(*keys)
    client.close()
