"""The database: migrations at start-up, SQLite settings, constraints, indexes, and a locked database."""

from __future__ import annotations

import fcntl
import inspect
import sqlite3

import pytest
from tortoise.connection import get_connection
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from chat import db
from chat.config import load_settings
from chat.models import COMPUTED_FIELDS, MESSAGE_FIELDS, Message, ReadMarker, User, message_json
from chat.rooms import room_for
from testkit.app import api_register, assert_error, started_app
from testkit.backends import BACKEND, MIGRATIONS

TABLES = {"users", "sessions", "messages", "read_markers", "tortoise_migrations"}


async def query(sql: str, values: list | None = None) -> list[dict]:
    return await get_connection("default").execute_query_dict(sql, values or [])


@pytest.mark.sqlite_only
async def test_start_up_applies_the_migrations(app):
    tables = {row["name"] for row in await query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables >= TABLES
    applied = await query("SELECT app, name FROM tortoise_migrations")
    assert applied == [{"app": "models", "name": name} for name in MIGRATIONS]


async def test_migrating_again_changes_nothing(app):
    await db.migrate(app.extensions["chat"].settings)
    assert len(await query("SELECT name FROM tortoise_migrations")) == len(MIGRATIONS)


@pytest.mark.sqlite_only
async def test_migrate_false_leaves_the_schema_alone(tmp_path):
    async with started_app(tmp_path, migrate=False):
        assert await query("SELECT name FROM sqlite_master WHERE type = 'table'") == []


@pytest.mark.sqlite_only
async def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(app):
    assert (await query("PRAGMA journal_mode"))[0]["journal_mode"] == "wal"
    assert (await query("PRAGMA synchronous"))[0]["synchronous"] == 1  # NORMAL
    assert (await query("PRAGMA busy_timeout"))[0]["timeout"] >= 1000
    assert (await query("PRAGMA foreign_keys"))[0]["foreign_keys"] == 1


@pytest.mark.sqlite_only
async def test_the_database_lives_in_the_instance_folder(app, tmp_path):
    assert (tmp_path / "instance" / "chat.sqlite3").exists()


async def test_usernames_are_unique_ignoring_case_in_the_database(app):
    await User.create(username="alice", username_key="alice", email="a@example.org", password_hash="x")
    with pytest.raises(IntegrityError):
        await User.create(username="Alice", username_key="alice", email="b@example.org", password_hash="x")
    with pytest.raises(IntegrityError):
        await User.create(username="bob", username_key="bob", email="a@example.org", password_hash="x")


async def test_a_client_id_is_unique_per_sender_in_the_database(app):
    a = await User.create(username="a", username_key="a", email="a@example.org", password_hash="x")
    b = await User.create(username="b", username_key="b", email="b@example.org", password_hash="x")
    room = room_for(a.id, b.id)
    await Message.create(sender=a, receiver=b, room=room, content="1", client_id="k")
    await Message.create(sender=b, receiver=a, room=room, content="2", client_id="k")
    await Message.create(sender=a, receiver=b, room=room, content="3", client_id=None)
    await Message.create(sender=a, receiver=b, room=room, content="4", client_id=None)
    with pytest.raises(IntegrityError):
        await Message.create(sender=a, receiver=b, room=room, content="5", client_id="k")


async def test_deleting_a_user_cascades(app):
    a = await User.create(username="a", username_key="a", email="a@example.org", password_hash="x")
    b = await User.create(username="b", username_key="b", email="b@example.org", password_hash="x")
    message = await Message.create(sender=a, receiver=b, room=room_for(a.id, b.id), content="hi")
    await ReadMarker.create(user=b, room=message.room, up_to=message.id)
    await a.delete()
    assert await Message.all().count() == 0
    assert await ReadMarker.all().count() == 1  # b's marker stays; b still exists


@pytest.mark.parametrize(
    "shape",
    [
        {"id__lt": 500, "order": "-id"},  # before
        {"id__gt": 500, "order": "id"},  # after
        {"order": "-id"},  # newest
    ],
)
@pytest.mark.sqlite_only
async def test_history_pages_are_range_scans_of_the_room_index(app, shape):
    """Paging cost must not grow with the conversation: SQLite must seek (room, id), never sort or scan."""
    filters = {key: value for key, value in shape.items() if key != "order"}
    sql = Message.filter(room="dm-1-2", **filters).order_by(shape["order"]).limit(51).sql(params_inline=True)
    plan = " | ".join(row["detail"] for row in await query("EXPLAIN QUERY PLAN " + sql))
    assert "ix_messages_room_id" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


@pytest.mark.sqlite_only
async def test_a_database_that_stays_locked_answers_503(tmp_path, monkeypatch):
    monkeypatch.setitem(db.SQLITE_PRAGMAS, "busy_timeout", 50)  # give up quickly: this test holds the lock
    async with started_app(tmp_path) as app:
        client = app.test_client()
        database = app.extensions["chat"].settings.sqlite_path
        holder = sqlite3.connect(database, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # another writer holds the database
            data = {"username": "alice", "email": "alice@example.org", "password": "long enough"}
            response = await client.post("/register", json=data)
            await assert_error(response, 503, "unavailable")
            assert response.headers["Retry-After"] == "1"
        finally:
            holder.rollback()
            holder.close()
        await api_register(client, "alice")  # and it recovers once the lock is gone


@pytest.mark.sqlite_only
async def test_the_migration_lock_excludes_other_holders(tmp_path):
    settings = load_settings({"CHAT_INSTANCE_PATH": str(tmp_path)})
    lock_path = tmp_path.resolve() / "chat.sqlite3.migrate.lock"

    def try_lock() -> bool:
        with open(lock_path, "a+") as other:  # a second open file: what another worker holds
            try:
                fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(other.fileno(), fcntl.LOCK_UN)
            return True

    async with db.migration_lock(settings):
        assert lock_path.exists() and not try_lock()
    assert try_lock()


@pytest.mark.skipif(BACKEND != "postgres", reason="asyncpg's pool: the PostgreSQL + Redis pass")
async def test_a_pooled_connection_goes_back_without_a_reset_query_and_clean(app):
    pool = get_connection("default")._pool
    sent: list[str] = []

    def log_query(record) -> None:
        sent.append(record.query)

    async with pool.acquire() as connection:
        raw = connection._con
    assert isinstance(raw, db.PooledConnection)
    raw.add_query_logger(log_query)
    try:
        async with pool.acquire() as connection:
            assert connection._con is raw  # the pool's one idle connection
            await connection.execute("SELECT 1")
        assert sent == ["SELECT 1"]  # asyncpg's reset query (a second round trip per query) is not sent
        # a transaction that fails goes back rolled back: its lock is free, and the connection serves again
        with pytest.raises(RuntimeError):
            async with in_transaction() as transaction:
                await transaction.execute_query("SELECT pg_advisory_xact_lock(4242)")
                raise RuntimeError("the request failed")
        assert not raw.is_in_transaction()
        assert (await query("SELECT pg_try_advisory_xact_lock(4242) AS free"))[0]["free"]
    finally:
        raw.remove_query_logger(log_query)


def test_history_selects_the_columns_in_the_order_message_json_takes_them():
    """conversations._page passes each row to message_json by position: the two orders must be one."""
    parameters = inspect.signature(message_json).parameters.values()
    positional = tuple(parameter.name for parameter in parameters if parameter.kind != parameter.KEYWORD_ONLY)
    assert positional == MESSAGE_FIELDS
    # what is not a column of messages is read apart and passed by name
    assert {p.name for p in parameters if p.kind == p.KEYWORD_ONLY} == set(COMPUTED_FIELDS)


@pytest.mark.sqlite_only
async def test_a_short_read_on_the_loop_sees_every_commit_and_answers_as_tortoise_does(app, tmp_path):
    reads = db._loop_reads[0]
    await api_register(app.test_client(), "alice")
    sql, values = "SELECT id, username FROM users WHERE username_key = ?1", ["alice"]
    _, through_tortoise = await get_connection("default").execute_query(sql, values)
    assert reads.rows(sql, values) == [tuple(row) for row in through_tortoise] != []
    await api_register(app.test_client(), "bob")  # committed through Tortoise's connection, then read on the loop's
    assert [row[1] for row in reads.rows("SELECT id, username FROM users ORDER BY id", [])] == ["alice", "bob"]
    with pytest.raises(sqlite3.OperationalError):  # only reads: a write is refused, not sent another way
        reads.rows("DELETE FROM users", [])


def test_a_read_that_meets_a_lock_is_left_to_tortoise_at_once(tmp_path):
    path = tmp_path / "locked.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("CREATE TABLE t (a)")
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("INSERT INTO t VALUES (1)")  # holds the file's lock until it closes
    reads = db.LoopReads(path)
    try:
        assert reads.rows("SELECT a FROM t", []) is None  # at once: no busy wait on the event loop
    finally:
        reads.close()
        holder.close()
    reads = db.LoopReads(path)
    assert reads.rows("SELECT a FROM t", []) == [(1,)]  # the lock gone
    reads.close()


async def test_select_goes_through_tortoise_where_the_loop_cannot_read(app, monkeypatch):
    await api_register(app.test_client(), "alice")
    for reads in db._loop_reads:
        monkeypatch.setattr(reads, "rows", lambda sql, values: None)
    rows = await db.select(f"SELECT username FROM users WHERE id = {db.param(1)}", [1])
    assert [row[0] for row in rows] == ["alice"]
