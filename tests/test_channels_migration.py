"""The channels migration (0002) from the previous schema, with data: every user, session, message and read marker
stays; messages gain `mentions` (none) and may then have no receiver; the new tables work."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from tortoise.connection import get_connection
from tortoise.exceptions import IntegrityError
from tortoise.migrations.executor import MigrationExecutor, MigrationTarget

from chat import conversations
from chat.db import tortoise_config
from chat.models import Channel, Membership, Mention, Message, ReadMarker, Session, User

from .support import started_app


async def query(sql: str, values: list | None = None) -> list[dict]:
    return await get_connection("default").execute_query_dict(sql, values or [])


async def test_migrating_from_the_initial_schema_keeps_every_row(tmp_path):
    async with started_app(tmp_path, migrate=False) as app:
        settings = app.extensions["chat"].settings
        executor = MigrationExecutor(get_connection("default"), tortoise_config(settings)["apps"])
        await executor.migrate([MigrationTarget("models", "0001_initial")])
        # the previous schema, filled as the previous code filled it (raw SQL: today's models have more columns)
        now = datetime.now(UTC)
        for name in ("alice", "bob"):
            await User.raw(
                "INSERT INTO users (username, username_key, email, password_hash, created_at) "
                f"VALUES ('{name}', '{name}', '{name}@example.org', 'x', '2026-11-01 00:00:00+00:00')"
            )
        alice, bob = await User.get(username="alice"), await User.get(username="bob")
        connection = get_connection("default")
        mark = "$" if settings.is_postgres else "?"
        for number in range(1, 4):
            await connection.execute_query(
                "INSERT INTO messages (sender_id, receiver_id, room, content, timestamp, client_id) "
                f"VALUES ({mark}1, {mark}2, {mark}3, {mark}4, {mark}5, {mark}6)",
                [alice.id, bob.id, f"dm-{alice.id}-{bob.id}", f"hello {number}", now, f"c{number}"],
            )
        first = (await query("SELECT MIN(id) AS id FROM messages"))[0]["id"]
        await connection.execute_query(
            f"INSERT INTO read_markers (user_id, room, up_to, updated_at) VALUES ({mark}1, {mark}2, {mark}3, {mark}4)",
            [bob.id, f"dm-{alice.id}-{bob.id}", first, now],
        )
        await connection.execute_query(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at)"
            f" VALUES ({mark}1, {mark}2, {mark}3, {mark}4)",
            ["a" * 64, alice.id, now, now + timedelta(days=1)],
        )

        await executor.migrate()

        applied = [row["name"] for row in await query("SELECT name FROM tortoise_migrations ORDER BY id")]
        assert applied[:2] == ["0001_initial", "0002_channels"]
        messages = await Message.all().order_by("id")
        assert [m.content for m in messages] == ["hello 1", "hello 2", "hello 3"]
        assert [m.public()["mentions"] for m in messages] == [[], [], []]
        assert {m.receiver_id for m in messages} == {bob.id}
        assert [m.client_id for m in messages] == ["c1", "c2", "c3"]
        assert await ReadMarker.get(user_id=bob.id).values_list("up_to", flat=True) == first
        assert await Session.filter(user_id=alice.id, token_hash="a" * 64).exists()
        # the rebuild of messages (SQLite) kept the sender's client_id key
        with pytest.raises(IntegrityError):
            await Message.create(
                sender_id=alice.id, receiver_id=bob.id, room=messages[0].room, content="x", client_id="c1"
            )
        # the new schema: a channel, its members, a message without receiver, a mention
        channel = await Channel.create(name="general", name_key="general", created_by_id=alice.id)
        await Membership.create(channel=channel, user=alice, role="owner")
        await Membership.create(channel=channel, user=bob)
        message = await Message.create(
            sender_id=alice.id, receiver_id=None, room=f"ch-{channel.id}", content="@bob hi", mentions=str(bob.id)
        )
        await Mention.create(user=bob, message=message, room=f"ch-{channel.id}")
        assert (await Message.get(id=message.id)).public()["mentions"] == [bob.id]
        assert (await Message.get(id=message.id)).public()["receiver_id"] is None
        # the old conversation still reads and counts as before
        async with app.app_context():
            page, _ = await conversations.history(alice.id, bob.id)
            users = await conversations.users_with_unread(bob.id)
        assert [m["content"] for m in page] == ["hello 1", "hello 2", "hello 3"]
        assert next(u for u in users if u["id"] == alice.id)["unread"] == 2
