"""Databases made ready before timing: the schema from the server's own code, then rows inserted directly.

Accounts get one bcrypt hash computed once (cost as configured, 12 by default): creating them through
/register would spend ~0.25 s of a core each. Conversations of 1 k to 1 M messages are inserted with
executemany in one transaction, in the same layout the server writes.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bcrypt

from chat.rooms import room_for
from chat.security import hash_password_sync

from .servers import BenchServer

PASSWORD = "bench password 1"  # noqa: S105 - a throwaway account on a throwaway database


@dataclass(frozen=True)
class Layout:
    """Who is who in a seeded database: the bench users 1..users, then the history reader and one peer per size."""

    users: int
    history_sizes: tuple[int, ...]

    @property
    def reader(self) -> int:
        return self.users + 1

    def peer(self, size: int) -> int:
        return self.users + 2 + self.history_sizes.index(size)

    def name(self, user_id: int) -> str:
        return f"bench{user_id:05d}"


def create_schema(server: BenchServer, flask_python: Path | None = None) -> None:
    """Let the server's own code create its tables: chat's migrations, or the reference's create_all()."""
    if server.schema == "chat":
        cmd = [sys.executable, "-m", "chat.cli", "migrate"]
    else:
        assert flask_python is not None
        cmd = [str(flask_python), "-c", "import app"]
    env = {**_base_env(), **server.env}
    subprocess.run(cmd, cwd=server.cwd, env=env, check=True, capture_output=True, timeout=120)


def _base_env() -> dict[str, str]:
    import os

    return {key: value for key, value in os.environ.items() if not key.startswith(("CHAT_", "BENCH_"))}


def password_hash(schema: str, rounds: int) -> str:
    if schema == "chat":
        return hash_password_sync(PASSWORD, rounds)
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds)).decode()  # Flask-Bcrypt's format


def seed(db_path: Path, schema: str, layout: Layout, rounds: int) -> None:
    hashed = password_hash(schema, rounds)
    now = datetime.now(UTC)
    user_ids = (
        range(1, layout.peer(layout.history_sizes[-1]) + 1) if layout.history_sizes else range(1, layout.users + 2)
    )
    with sqlite3.connect(db_path) as db:
        db.execute("PRAGMA synchronous=OFF")
        if schema == "chat":
            db.executemany(
                "INSERT INTO users (id, username, username_key, email, password_hash, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (i, layout.name(i), layout.name(i), f"{layout.name(i)}@example.org", hashed, _ts(now))
                    for i in user_ids
                ],
            )
        else:
            db.executemany(
                'INSERT INTO "user" (id, username, email, password) VALUES (?, ?, ?, ?)',
                [(i, layout.name(i), f"{layout.name(i)}@example.org", hashed) for i in user_ids],
            )
        for size in layout.history_sizes:
            _seed_conversation(db, schema, layout.reader, layout.peer(size), size, now)
    with sqlite3.connect(db_path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _ts(when: datetime, naive: bool = False) -> str:
    text = when.strftime("%Y-%m-%d %H:%M:%S.%f")
    return text if naive else text + "+00:00"


def _seed_conversation(db: sqlite3.Connection, schema: str, a: int, b: int, size: int, now: datetime) -> None:
    room = room_for(a, b)
    start = now - timedelta(seconds=size)
    naive = schema == "flask"

    def rows():
        for number in range(size):
            sender, receiver = (a, b) if number % 2 else (b, a)
            content = f"history message {number} of a conversation of {size}"
            yield sender, receiver, room, content, _ts(start + timedelta(seconds=number), naive)

    table = "messages" if schema == "chat" else "message"
    db.executemany(
        f"INSERT INTO {table} (sender_id, receiver_id, room, content, timestamp) VALUES (?, ?, ?, ?, ?)",  # noqa: S608
        rows(),
    )


def middle_id(db_path: Path, schema: str, a: int, b: int) -> int:
    """The id of the message in the middle of a conversation: the `before=` cursor of scenario 2."""
    table = "messages" if schema == "chat" else "message"
    room = room_for(a, b)
    with sqlite3.connect(db_path) as db:
        (count,) = db.execute(f"SELECT COUNT(*) FROM {table} WHERE room = ?", (room,)).fetchone()  # noqa: S608
        (found,) = db.execute(
            f"SELECT id FROM {table} WHERE room = ? ORDER BY id LIMIT 1 OFFSET ?",  # noqa: S608
            (room, count // 2),
        ).fetchone()
    return found


def stored_client_ids(db_path: Path, schema: str, prefix: str) -> dict[str, int]:
    """How many times each client_id with `prefix` is stored."""
    table = "messages" if schema == "chat" else "message"
    with sqlite3.connect(db_path) as db:
        rows = db.execute(
            f"SELECT client_id, COUNT(*) FROM {table} WHERE client_id LIKE ? GROUP BY client_id",  # noqa: S608
            (prefix + "-%",),
        ).fetchall()
    return dict(rows)
