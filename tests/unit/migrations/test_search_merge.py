"""The search-merge migration (0008) from the files schema (0007), with data: every message stays and is still
found, and on SQLite the full-text index merges its segments eight at a time from then on."""

from __future__ import annotations

import importlib

from chat import search
from chat.models import Message
from testkit.backends import BACKEND
from testkit.migrations import schema_at

MERGE = importlib.import_module("migrations.0008_search_merge")


async def test_migrating_from_the_files_schema_keeps_every_message_findable(tmp_path):
    async with schema_at(tmp_path, "0007_files") as schema:
        app, query = schema.app, schema.query
        alice, bob = await schema.add_user("alice"), await schema.add_user("bob")
        for number in range(1, 4):
            await schema.add_direct_message(alice, bob, f"staging password {number}", f"c{number}")
        old = await query("SELECT id, content FROM messages ORDER BY id")

        applied = await schema.migrate_the_rest()
        assert "0008_search_merge" in applied
        if BACKEND == "sqlite":
            config = await query("SELECT v FROM messages_fts_config WHERE k = 'automerge'")
            assert [row["v"] for row in config] == [MERGE.MERGE_AT]
        await schema.add_direct_message(bob, alice, "staging password after", "c4")
        async with app.app_context():
            found, _ = await search.search(bob, search.parse_query("staging password"))
        assert sorted(m["id"] for m in found) == [row["id"] for row in old] + [max(row["id"] for row in old) + 1]
        assert await Message.all().count() == 4
