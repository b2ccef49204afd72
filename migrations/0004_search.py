"""Full-text search over messages (issue 15): what chat/search.py queries. docs/search.md says what each
database does with the words.

- SQLite: an FTS5 table with external content (the messages table itself), kept current by triggers, since
  messages are written by raw batched INSERTs (and edited or deleted by UPDATE and DELETE).
- PostgreSQL: a stored generated tsvector column with a GIN index, so PostgreSQL keeps it current itself.

Both index the messages already stored. Raw SQL statement by statement: Tortoise's SQLite schema editor splits
RunSQL on ";", which would cut the trigger bodies apart.
"""

import string

from tortoise import migrations
from tortoise.migrations import operations as ops

SQLITE_FORWARD = [
    "CREATE VIRTUAL TABLE messages_fts USING fts5("
    "content, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN"
    " INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN"
    " INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content); END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN"
    " INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);"
    " INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END",
    # the messages already stored
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS messages_fts_insert",
    "DROP TRIGGER IF EXISTS messages_fts_delete",
    "DROP TRIGGER IF EXISTS messages_fts_update",
    "DROP TABLE IF EXISTS messages_fts",
]

# unaccent ships with PostgreSQL (contrib) and is a trusted extension: a database owner may create it. Where it
# cannot be created, accents count on PostgreSQL (docs/search.md).
PG_UNACCENT = """DO $$ BEGIN CREATE EXTENSION IF NOT EXISTS unaccent;
EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'unaccent is not available: accents will count in search'; END $$"""
PG_UNACCENT_SCHEMA = (
    "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'unaccent'"
)
_SPACES = " " * len(string.punctuation)
_PUNCTUATION_SQL = string.punctuation.replace("'", "''")


def pg_forward_statements(unaccent_schema: str | None, schema: str = "public") -> list[str]:
    """`schema`: where the functions are made. The functions that call chat_search_fold name it with its schema:
    pg_restore runs with an empty search_path, and the generated column's function must still find it."""
    # immutable, as a generated column requires (unaccent() itself is only stable: its dictionary is named here)
    folded = (
        f'"{unaccent_schema}".unaccent(\'"{unaccent_schema}".unaccent\'::regdictionary, t)' if unaccent_schema else "t"
    )
    return [
        "CREATE OR REPLACE FUNCTION chat_search_fold(t text) RETURNS text"
        f" LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT {folded} $$",
        # ASCII punctuation separates words, as in FTS5 (the parser would keep hosts and hyphenated words whole)
        "CREATE OR REPLACE FUNCTION chat_search_vector(content text) RETURNS tsvector"
        " LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT to_tsvector('simple'::regconfig,"
        f" translate(\"{schema}\".chat_search_fold(content), '{_PUNCTUATION_SQL}', '{_SPACES}')) $$",
        "CREATE OR REPLACE FUNCTION chat_search_query(q text) RETURNS tsquery"
        " LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT to_tsquery('simple'::regconfig,"
        f' "{schema}".chat_search_fold(q)) $$',
        # computed for every stored row now, and by PostgreSQL for every row written from now on
        "ALTER TABLE messages ADD COLUMN search_vector tsvector"
        " GENERATED ALWAYS AS (chat_search_vector(content)) STORED",
        "CREATE INDEX ix_messages_search ON messages USING gin (search_vector)",
    ]


PG_BACKWARD = [
    "DROP INDEX IF EXISTS ix_messages_search",
    "ALTER TABLE messages DROP COLUMN IF EXISTS search_vector",
    "DROP FUNCTION IF EXISTS chat_search_query(text)",
    "DROP FUNCTION IF EXISTS chat_search_vector(text)",
    "DROP FUNCTION IF EXISTS chat_search_fold(text)",
]


async def forward(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        await client.execute_query(PG_UNACCENT)
        _, rows = await client.execute_query(PG_UNACCENT_SCHEMA)
        _, schema = await client.execute_query("SELECT current_schema()")
        statements = pg_forward_statements(rows[0][0] if rows else None, schema[0][0])
    else:
        statements = SQLITE_FORWARD
    for statement in statements:
        await client.execute_query(statement)


async def backward(apps, schema_editor) -> None:
    client = schema_editor.client
    for statement in PG_BACKWARD if client.capabilities.dialect == "postgres" else SQLITE_BACKWARD:
        await client.execute_query(statement)


class Migration(migrations.Migration):
    dependencies = [("models", "0003_account_lifecycle")]

    operations = [ops.RunPython(forward, backward)]
