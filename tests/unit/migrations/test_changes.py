"""The changes migration (0005) from the search schema (0004), with data: every message stays as it was, with the
new defaults (not edited, not deleted, no reply, no reactions); the client_id key, the (room, id) index and
search's index (FTS5 triggers on SQLite, the generated tsvector on PostgreSQL) survive and follow edits and
deletes; the new columns and the reactions table work."""

from __future__ import annotations

import pytest
from tortoise.exceptions import IntegrityError

from chat import changes, search
from chat.models import Message
from testkit.migrations import schema_at


async def test_migrating_from_the_search_schema_keeps_every_message_and_the_indexes(tmp_path):
    async with schema_at(tmp_path, "0004_search") as schema:
        app, query = schema.app, schema.query
        settings = app.extensions["chat"].settings
        alice, bob = await schema.add_user("alice"), await schema.add_user("bob")
        room = f"dm-{min(alice, bob)}-{max(alice, bob)}"
        for number in range(1, 4):
            await schema.add_direct_message(alice, bob, f"rollout {number}", f"c{number}")
        old = await query("SELECT id, content FROM messages ORDER BY id")

        applied = await schema.migrate_the_rest()
        assert "0005_changes" in applied
        messages = [m.public() for m in await Message.all().order_by("id")]
        assert [(m["id"], m["content"]) for m in messages] == [(row["id"], row["content"]) for row in old]
        for message in messages:
            assert (message["edited_at"], message["deleted"], message["reply_to"]) == (None, False, None)
        assert {m.event for m in await Message.all()} == {""}
        with pytest.raises(IntegrityError):  # the sender's client_id key
            await Message.create(sender_id=alice, receiver_id=bob, room=room, content="x", client_id="c1")
        if settings.is_postgres:
            indexes = {row["indexname"] for row in await query("SELECT indexname FROM pg_indexes")}
        else:
            indexes = {row["name"] for row in await query("SELECT name FROM sqlite_master WHERE type = 'index'")}
            triggers = {row["name"] for row in await query("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
            assert {"messages_fts_insert", "messages_fts_delete", "messages_fts_update"} <= triggers
        assert "ix_messages_room_id" in indexes

        # search follows an edit and a delete made through the new path, and the reactions table works
        async with app.app_context():
            first, second = messages[0]["id"], messages[1]["id"]
            await changes.edit(alice, first, "canary 1")
            await changes.react(bob, first, "👍", on=True)
            await changes.delete(alice, second)
            found, _ = await search.search(bob, search.parse_query("canary"))
            assert [m["id"] for m in found] == [first]
            assert found[0]["reactions"] == [{"emoji": "👍", "count": 1, "user_ids": [bob]}]
            found, _ = await search.search(bob, search.parse_query("rollout"))
            assert [m["id"] for m in found] == [messages[2]["id"]]
