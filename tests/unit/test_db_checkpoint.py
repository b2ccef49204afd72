"""SQLite's WAL is checkpointed by a thread of its own, not by the commit that happens to fill it."""

from __future__ import annotations

import sqlite3
import time

import pytest
from tortoise.connection import get_connection

from chat import db
from testkit.backends import BACKEND

pytestmark = pytest.mark.skipif(BACKEND == "postgres", reason="SQLite's write-ahead log")


async def test_the_server_connection_leaves_checkpoints_to_the_checkpointer(app):
    connection = get_connection("default")
    assert (await connection.execute_query("PRAGMA wal_autocheckpoint"))[1][0][0] == 0
    assert (await connection.execute_query("PRAGMA journal_size_limit"))[1][0][0] == 64 * 1024 * 1024
    assert [c._thread.is_alive() for c in db._checkpointers] == [True]


def test_the_checkpointer_copies_the_wal_into_the_database_file(tmp_path, monkeypatch):
    monkeypatch.setattr(db, "CHECKPOINT_SECONDS", 0.02)
    path = tmp_path / "wal.sqlite3"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE t (x TEXT)")
    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    empty = path.stat().st_size
    writer.execute("BEGIN")
    writer.executemany("INSERT INTO t VALUES (?)", [("x" * 500,) for _ in range(2000)])
    writer.execute("COMMIT")
    assert path.stat().st_size == empty  # all of it still in the WAL
    checkpointer = db.WalCheckpointer(path).start()
    try:
        deadline = time.monotonic() + 10
        while path.stat().st_size == empty:
            assert time.monotonic() < deadline, "no checkpoint happened"
            time.sleep(0.01)
    finally:
        checkpointer.stop()
        writer.close()
    assert not checkpointer._thread.is_alive()
