"""The search-cost migration (0006) from the changes schema (0005), with data: every message stays, is still
found by its words, and on PostgreSQL its stored vector is what the new `chat_search_vector` computes (the new
function gives the same vector for every text, so nothing had to be recomputed); new messages are indexed; the
way back restores 0004's function."""

from __future__ import annotations

import importlib
import string
from datetime import UTC, datetime

from tortoise.migrations.executor import MigrationTarget

from chat import search
from chat.models import Message
from testkit.migrations import schema_at

COST = importlib.import_module("migrations.0006_search_cost")
TEXTS = [
    "Le déploiement d'hier sur staging.example.com",
    "e-mail from Zoë: don't (re)start [prod]!",
    "東京タワーに行った — ΕΛΛΗΝΙΚΆ {x}~y`z_w",
    "plain words only",
]


async def test_migrating_from_the_changes_schema_keeps_the_index_current(tmp_path):
    async with schema_at(tmp_path, "0005_changes") as schema:
        app, query, mark, executor = schema.app, schema.query, schema.mark, schema.executor
        settings = app.extensions["chat"].settings
        alice, bob = await schema.add_user("alice"), await schema.add_user("bob")
        room = f"dm-{min(alice, bob)}-{max(alice, bob)}"
        for text in TEXTS:
            await schema.execute(
                "INSERT INTO messages (sender_id, receiver_id, room, content, timestamp, mentions)"
                f" VALUES ({mark}1, {mark}2, {mark}3, {mark}4, {mark}5, '')",
                [alice, bob, room, text, datetime.now(UTC)],
            )
        old = await query("SELECT id, content FROM messages ORDER BY id")

        applied = await schema.migrate_the_rest()
        assert "0006_search_cost" in applied
        assert await query("SELECT id, content FROM messages ORDER BY id") == old
        if settings.is_postgres:
            (definition,) = await query("SELECT prosrc FROM pg_proc WHERE proname = 'chat_search_vector'")
            assert "regexp_replace" in definition["prosrc"] and "translate" not in definition["prosrc"]
            # the vectors stored by 0004's function are the new function's: the index needed no recomputing
            stale = await query("SELECT id FROM messages WHERE search_vector <> chat_search_vector(content)")
            assert stale == []
            # and the two replacements agree on every character, not only on these texts
            differ = await query(
                "SELECT c FROM generate_series(1, 12543) AS c WHERE"
                f" {COST.BACKWARD.replace('folded', 'chr(c)')} <> {COST.FORWARD.replace('folded', 'chr(c)')}"
            )
            assert differ == []
        ids_by_text = {row["content"]: row["id"] for row in old}
        async with app.app_context():
            for words, text in [
                ("deploiement", TEXTS[0]),
                ("staging example", TEXTS[0]),
                ('"e mail"', TEXTS[1]),
                ("don't start prod", TEXTS[1]),
                ("タワー", TEXTS[2]),
                ("ελληνικά", TEXTS[2]),
                ("z w", TEXTS[2]),
            ]:
                found, _ = await search.search(bob, search.parse_query(words))
                assert [m["id"] for m in found] == [ids_by_text[text]], words
            new = await Message.create(sender_id=bob, receiver_id=alice, room=room, content="re-deploy of x.y")
            found, _ = await search.search(alice, search.parse_query('"re deploy" y'))
            assert [m["id"] for m in found] == [new.id]

        await executor.migrate([MigrationTarget("models", "0005_changes")])  # the way back
        if settings.is_postgres:
            (definition,) = await query("SELECT prosrc FROM pg_proc WHERE proname = 'chat_search_vector'")
            assert "translate" in definition["prosrc"]
            assert await query("SELECT id FROM messages WHERE search_vector <> chat_search_vector(content)") == []


def test_the_punctuation_class_is_ascii_punctuation():
    import re

    matched = {chr(c) for c in range(1, 0x3000) if re.fullmatch(COST.PUNCTUATION_CLASS, chr(c))}
    assert matched == set(string.punctuation)
