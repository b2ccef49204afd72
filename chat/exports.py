"""Exports and imports: a person's own data (GET /me/export), a whole instance or one user (`chat export`), and
`chat import`, which reads a whole-instance export back into an empty instance. The format is
docs/operations.md's "Export format": one JSON object, written as a stream (messages a batch at a time, so that
memory does not grow with the history).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import orjson
from tortoise.connection import get_connection
from tortoise.transactions import in_transaction

from .conversations import MESSAGE_COLUMNS
from .db import param
from .models import MESSAGE_FIELDS, ReadMarker, User, message_json, utcnow

FORMAT = "chat-export"
VERSION = 1
BATCH = 1000  # messages read (and written) at a time
INSTANCE, USER = "instance", "user"


class ImportRefused(RuntimeError):
    """The file cannot be imported here; the message says why (nothing was written)."""


def _account(user: User, with_secrets: bool) -> dict:
    account = {
        **user.account(),
        "created_at": user.created_at.isoformat(),
        "deactivated_at": _iso(user.deactivated_at),
        "deleted_at": _iso(user.deleted_at),
    }
    if with_secrets:  # a whole-instance export restores sign-ins: the bcrypt hashes go with it
        account["password_hash"] = user.password_hash
    return account


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def export_stream(scope: str, user: User | None = None, with_secrets: bool = False) -> AsyncIterator[bytes]:
    """The export as chunks of one JSON document: the whole instance, or one user's account and the messages
    they sent or received (then without read markers of others)."""
    users = [user] if user is not None else await User.all().order_by("id")
    head = {"format": FORMAT, "version": VERSION, "scope": scope, "exported_at": utcnow().isoformat()}
    yield orjson.dumps(head)[:-1] + b', "users": ['
    yield b",".join(orjson.dumps(_account(each, with_secrets)) for each in users)
    yield b'], "messages": ['
    first = True
    async for batch in _messages(user.id if user is not None else None):
        yield (b"" if first else b",") + b",".join(orjson.dumps(message) for message in batch)
        first = False
    markers = ReadMarker.filter(user_id=user.id) if user is not None else ReadMarker.all()
    rows = await markers.order_by("id").values("user_id", "room", "up_to")
    yield b'], "read_markers": ' + orjson.dumps(rows) + b"}"


async def _messages(user_id: int | None) -> AsyncIterator[list[dict]]:
    """Messages in id order, a batch at a time (keyset paging: each batch is a range scan)."""
    after = 0
    while True:
        values: list = [after]
        condition = f"id > {param(1)}"
        if user_id is not None:
            values.append(user_id)
            condition += f" AND (sender_id = {param(2)} OR receiver_id = {param(2)})"
        values.append(BATCH)
        sql = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {condition} ORDER BY id LIMIT {param(len(values))}"  # noqa: S608 - markers only
        _, rows = await get_connection("default").execute_query(sql, values)
        if not rows:
            return
        batch = [message_json(*row) for row in rows]
        yield batch
        after = batch[-1]["id"]


async def import_instance(document: dict) -> dict[str, int]:
    """Write a whole-instance export into this (empty) instance, ids kept; returns how many rows of each kind."""
    _check(document)
    async with in_transaction() as connection:
        if await User.all().using_db(connection).exists():
            raise ImportRefused("this instance has accounts already: import into an empty one")
        for account in document["users"]:
            await User.create(
                using_db=connection,
                id=account["id"],
                username=account["username"],
                # a deleted account's key is its placeholder email (accounts.delete_account gives both one value)
                username_key=account["username"].lower() if account["deleted_at"] is None else account["email"],
                email=account["email"],
                password_hash=account["password_hash"],
                is_admin=account["role"] == "admin",
                created_at=datetime.fromisoformat(account["created_at"]),
                deactivated_at=_datetime(account["deactivated_at"]),
                deleted_at=_datetime(account["deleted_at"]),
            )
        messages = document["messages"]
        for start in range(0, len(messages), BATCH):
            await _insert_messages(connection, messages[start : start + BATCH])
        for marker in document["read_markers"]:
            await ReadMarker.create(using_db=connection, **marker)
        if connection.capabilities.dialect == "postgres":  # the next ids continue after the imported ones
            for table in ("users", "messages", "read_markers"):
                await connection.execute_query(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 0) + 1, false) "  # noqa: S608
                    f"FROM {table}"
                )
    return {"users": len(document["users"]), "messages": len(messages), "read_markers": len(document["read_markers"])}


async def _insert_messages(connection, messages: list[dict]) -> None:
    if not messages:
        return
    rows, values = [], []
    for number, message in enumerate(messages):
        first = number * len(MESSAGE_FIELDS) + 1
        rows.append("(" + ", ".join(param(first + i) for i in range(len(MESSAGE_FIELDS))) + ")")
        values += [_column_value(message, name) for name in MESSAGE_FIELDS]
    sql = f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES {', '.join(rows)}"  # noqa: S608 - markers only
    await connection.execute_query(sql, values)


def _column_value(message: dict, name: str) -> object:
    return datetime.fromisoformat(message[name]) if name == "timestamp" else message[name]


def _datetime(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _check(document: object) -> None:
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ImportRefused("not a chat export")
    if document.get("version") != VERSION:
        raise ImportRefused(f"export version {document.get('version')!r}: this chat reads version {VERSION}")
    if document.get("scope") != INSTANCE:
        raise ImportRefused("a one-user export is that person's copy: only a whole-instance export can be imported")
    for key in ("users", "messages", "read_markers"):
        if not isinstance(document.get(key), list):
            raise ImportRefused(f"{key!r} is missing")
    if any("password_hash" not in account for account in document["users"]):
        raise ImportRefused("an export without password hashes cannot restore accounts")
