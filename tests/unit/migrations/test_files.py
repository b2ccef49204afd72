"""The files migration (0007) from the search-cost schema (0006), with data: every message stays as it was, now with no
files; the files table works, and a message's files are read with it."""

from __future__ import annotations

from chat import conversations
from chat.models import File, Message
from chat.rooms import Room
from testkit.migrations import schema_at


async def test_migrating_from_the_search_cost_schema_keeps_every_message(tmp_path):
    async with schema_at(tmp_path, "0006_search_cost") as schema:
        app, query = schema.app, schema.query
        alice, bob = await schema.add_user("alice"), await schema.add_user("bob")
        room = Room.direct(alice, bob)
        for number in range(1, 4):
            await schema.add_direct_message(alice, bob, f"before files {number}", f"c{number}")
        old = await query("SELECT id, content FROM messages ORDER BY id")

        applied = await schema.migrate_the_rest()
        assert "0007_files" in applied
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
