"""The send cost of the search index (issue 15): PostgreSQL computes the generated tsvector for every message
written, and 0004's `chat_search_vector` spent about two thirds of that time in `translate()`, which compares
each character of the text with the 32 of ASCII punctuation, one by one. One regular expression over the ranges
of ASCII punctuation (PUNCTUATION_CLASS, by code point: exactly `string.punctuation`), each such character
becoming one space as before, gives the same vector for every text in about a third of the time
(docs/search.md, Cost).

Since every text's vector is unchanged, the stored column and the GIN index are current as they are: nothing is
recomputed. The function keeps its name, its schema and its properties (IMMUTABLE, as a generated column
requires; an inlinable SQL function), so the generated column's expression is untouched.

SQLite: nothing. FTS5's cost is per commit (a new segment), not per row; docs/search.md says what was measured.
"""

import string

from tortoise import migrations
from tortoise.migrations import operations as ops

# string.punctuation as code-point ranges: ! to /, : to @, [ to `, { to ~
PUNCTUATION_RANGES = ((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E))
PUNCTUATION_CLASS = "[" + "".join(f"\\x{low:02x}-\\x{high:02x}" for low, high in PUNCTUATION_RANGES) + "]"
_QUOTED_PUNCTUATION = string.punctuation.replace("'", "''")
_SPACES = " " * len(string.punctuation)


def vector_function(schema: str, punctuation_to_spaces: str) -> str:
    """`punctuation_to_spaces`: an SQL expression of `folded`, the text with its Latin accents removed."""
    folded = f'"{schema}".chat_search_fold(content)'
    return (
        f'CREATE OR REPLACE FUNCTION "{schema}".chat_search_vector(content text) RETURNS tsvector'
        " LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT to_tsvector('simple'::regconfig,"
        f" {punctuation_to_spaces.replace('folded', folded)}) $$"
    )


FORWARD = f"regexp_replace(folded, '{PUNCTUATION_CLASS}', ' ', 'g')"
BACKWARD = f"translate(folded, '{_QUOTED_PUNCTUATION}', '{_SPACES}')"  # 0004's, for the way back


async def _replace(schema_editor, body: str) -> None:
    client = schema_editor.client
    if client.capabilities.dialect != "postgres":
        return
    _, rows = await client.execute_query("SELECT current_schema()")  # where 0004 made the functions
    await client.execute_query(vector_function(rows[0][0], body))


async def forward(apps, schema_editor) -> None:
    await _replace(schema_editor, FORWARD)


async def backward(apps, schema_editor) -> None:
    await _replace(schema_editor, BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("models", "0005_changes")]

    operations = [ops.RunPython(forward, backward)]
