"""The send cost of the search index on SQLite (issue 15): FTS5 writes each commit's rows as a new segment and,
by default, merges segments as soon as 4 of one level exist (`automerge` 4). On a database of a million messages
that merging was most of what the index adds to a send: a one-row commit cost 350 µs of CPU with the index and
100 µs without; with `automerge` 8, 234 µs (docs/search.md, Cost). A search then reads at most 7 segments of a
level instead of 3, on fewer levels; its latency, measured by `make bench-search`, is in the same document.

FTS5 keeps the setting in the index's own config table, so this is one statement, and the rows and segments stay
as they are; merging follows the new setting from the next commit on. PostgreSQL: nothing (its GIN index has
its own pending list, `fastupdate`, left on: docs/search.md).
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

MERGE_AT = 8  # segments of one level that FTS5 merges into one of the next
DEFAULT_MERGE_AT = 4  # FTS5's own default, for the way back


async def _set_automerge(schema_editor, segments: int) -> None:
    client = schema_editor.client
    if client.capabilities.dialect != "sqlite":
        return
    await client.execute_query("INSERT INTO messages_fts(messages_fts, rank) VALUES ('automerge', ?)", [segments])


async def forward(apps, schema_editor) -> None:
    await _set_automerge(schema_editor, MERGE_AT)


async def backward(apps, schema_editor) -> None:
    await _set_automerge(schema_editor, DEFAULT_MERGE_AT)


class Migration(migrations.Migration):
    dependencies = [("models", "0007_files")]

    operations = [ops.RunPython(forward, backward)]
