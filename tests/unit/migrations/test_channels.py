"""The channels migration (0002) from the previous schema, with data: every user, session, message and read marker
stays; messages gain `mentions` (none) and may then have no receiver; the new tables work."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from tortoise.exceptions import IntegrityError

from chat import conversations
from chat.models import Channel, Membership, Mention, Message, ReadMarker, Session, User
from testkit.migrations import schema_at


async def test_migrating_from_the_initial_schema_keeps_every_row(tmp_path):
    async with schema_at(tmp_path, "0001_initial") as old:
        app, query, mark = old.app, old.query, old.mark
        now = datetime.now(UTC)
        alice = User(id=await old.add_user("alice"), username="alice")
        bob = User(id=await old.add_user("bob"), username="bob")
        for number in range(1, 4):
            await old.execute(
                "INSERT INTO messages (sender_id, receiver_id, room, content, timestamp, client_id) "
                f"VALUES ({mark}1, {mark}2, {mark}3, {mark}4, {mark}5, {mark}6)",
                [alice.id, bob.id, f"dm-{alice.id}-{bob.id}", f"hello {number}", now, f"c{number}"],
            )
        first = (await query("SELECT MIN(id) AS id FROM messages"))[0]["id"]
        await old.execute(
            f"INSERT INTO read_markers (user_id, room, up_to, updated_at) VALUES ({mark}1, {mark}2, {mark}3, {mark}4)",
            [bob.id, f"dm-{alice.id}-{bob.id}", first, now],
        )
        await old.execute(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at)"
            f" VALUES ({mark}1, {mark}2, {mark}3, {mark}4)",
            ["a" * 64, alice.id, now, now + timedelta(days=1)],
        )

        applied = await old.migrate_the_rest()
        alice, bob = await User.get(id=alice.id), await User.get(id=bob.id)
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
