"""The files migration (0006) from the changes schema (0005), with data: every message stays as it was, now with no
files; the files table works, and a message's files are read with it."""

from __future__ import annotations

from datetime import UTC, datetime

from tortoise.connection import get_connection
from tortoise.migrations.executor import MigrationExecutor, MigrationTarget

from chat import conversations
from chat.db import tortoise_config
from chat.models import File, Message
from chat.rooms import Room
from testkit.app import started_app


async def query(sql: str, values: list | None = None) -> list[dict]:
    return await get_connection("default").execute_query_dict(sql, values or [])


async def test_migrating_from_the_changes_schema_keeps_every_message(tmp_path):
    async with started_app(tmp_path, migrate=False) as app:
        settings = app.extensions["chat"].settings
        executor = MigrationExecutor(get_connection("default"), tortoise_config(settings)["apps"])
        await executor.migrate([MigrationTarget("models", "0005_changes")])
        for name in ("alice", "bob"):
            await query(
                "INSERT INTO users (username, username_key, email, password_hash, created_at, is_admin) "
                f"VALUES ('{name}', '{name}', '{name}@example.org', 'x', '2026-11-01 00:00:00+00:00', FALSE)"
            )
        ids = {row["username"]: row["id"] for row in await query("SELECT id, username FROM users")}
        alice, bob = ids["alice"], ids["bob"]
        room = Room.direct(alice, bob)
        mark = "$" if settings.is_postgres else "?"
        for number in range(1, 4):
            await get_connection("default").execute_query(
                "INSERT INTO messages (sender_id, receiver_id, room, content, timestamp, client_id, mentions) "
                f"VALUES ({mark}1, {mark}2, {mark}3, {mark}4, {mark}5, {mark}6, '')",
                [alice, bob, room.name, f"before files {number}", datetime.now(UTC), f"c{number}"],
            )
        old = await query("SELECT id, content FROM messages ORDER BY id")

        await executor.migrate()

        applied = [row["name"] for row in await query("SELECT name FROM tortoise_migrations ORDER BY id")]
        assert applied[-1] == "0006_files"
        first = old[0]["id"]
        await File.create(
            uploader_id=alice,
            room=room.name,
            name="a.pdf",
            content_type="application/pdf",
            size=3,
            key="ab/ab",
            message_id=first,
        )
        async with app.app_context():
            page, _ = await conversations.room_history(room)
        assert [(m["id"], m["content"]) for m in page] == [(row["id"], row["content"]) for row in old]
        assert [f["name"] for f in page[0]["files"]] == ["a.pdf"]
        assert all(m["files"] == [] for m in page[1:])
        assert await Message.all().count() == 3
