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

from .conversations import MESSAGE_COLUMNS, with_reactions
from .db import param
from .models import (
    MESSAGE_FIELDS,
    Channel,
    Membership,
    Mention,
    Reaction,
    ReadMarker,
    User,
    mention_text,
    message_json,
    utcnow,
)
from .rooms import Room

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
    """The export as chunks of one JSON document: the whole instance, or one user's account, their channels and
    memberships, and the messages of their rooms (then without read markers of others)."""
    users = [user] if user is not None else await User.all().order_by("id")
    head = {"format": FORMAT, "version": VERSION, "scope": scope, "exported_at": utcnow().isoformat()}
    yield orjson.dumps(head)[:-1] + b', "users": ['
    yield b",".join(orjson.dumps(_account(each, with_secrets)) for each in users)
    memberships = Membership.filter(user_id=user.id) if user is not None else Membership.all()
    member_rows = await memberships.order_by("id").values("channel_id", "user_id", "role", "joined_at")
    channel_ids = sorted({row["channel_id"] for row in member_rows})
    channels = Channel.filter(id__in=channel_ids) if user is not None else Channel.all()
    yield b'], "channels": ' + orjson.dumps([_channel(each) for each in await channels.order_by("id")])
    yield b', "memberships": ' + orjson.dumps([{**row, "joined_at": _iso(row["joined_at"])} for row in member_rows])
    yield b', "messages": ['
    first = True
    rooms = [Room.of_channel(channel_id).name for channel_id in channel_ids]
    async for batch in _messages(user.id if user is not None else None, rooms):
        yield (b"" if first else b",") + b",".join(orjson.dumps(message) for message in batch)
        first = False
    markers = ReadMarker.filter(user_id=user.id) if user is not None else ReadMarker.all()
    rows = await markers.order_by("id").values("user_id", "room", "up_to")
    yield b'], "read_markers": ' + orjson.dumps(rows) + b"}"


def _channel(channel: Channel) -> dict:
    return {
        "id": channel.id,
        "name": channel.name,
        "topic": channel.topic,
        "private": channel.private,
        "archived": channel.archived,
        "created_by": channel.created_by_id,
        "created_at": channel.created_at.isoformat(),
    }


async def _messages(user_id: int | None, rooms: list[str]) -> AsyncIterator[list[dict]]:
    """Messages in id order, a batch at a time (keyset paging: each batch is a range scan), each with its reactions
    (one more query per batch); for one user, the direct messages they sent or received and every message of their
    channels (`rooms`). The changes' event rows are not exported: a message is exported as it is now."""
    after = 0
    while True:
        values: list = [after]
        condition = f"id > {param(1)} AND event = ''"  # messages as they are now, not the changes that led there
        if user_id is not None:
            values.append(user_id)
            mine = f"sender_id = {param(2)} OR receiver_id = {param(2)}"
            for name in rooms:
                values.append(name)
                mine += f" OR room = {param(len(values))}"
            condition += f" AND ({mine})"
        values.append(BATCH)
        sql = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {condition} ORDER BY id LIMIT {param(len(values))}"  # noqa: S608 - markers only
        _, rows = await get_connection("default").execute_query(sql, values)
        if not rows:
            return
        batch = await with_reactions([message_json(*row) for row in rows])  # with their files' metadata: the bytes stay
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
        for channel in document["channels"]:
            await Channel.create(
                using_db=connection,
                id=channel["id"],
                name=channel["name"],
                name_key=channel["name"].lower(),
                topic=channel["topic"],
                private=channel["private"],
                archived=channel["archived"],
                created_by_id=channel["created_by"],
                created_at=datetime.fromisoformat(channel["created_at"]),
            )
        for membership in document["memberships"]:
            await Membership.create(
                using_db=connection, **{**membership, "joined_at": datetime.fromisoformat(membership["joined_at"])}
            )
        messages = document["messages"]
        reactions = 0
        for start in range(0, len(messages), BATCH):
            await _insert_messages(connection, messages[start : start + BATCH])
            reactions += await _insert_reactions(connection, messages[start : start + BATCH])
        for marker in document["read_markers"]:
            await ReadMarker.create(using_db=connection, **marker)
        if connection.capabilities.dialect == "postgres":  # the next ids continue after the imported ones
            for table in ("users", "channels", "memberships", "messages", "mentions", "reactions", "read_markers"):
                await connection.execute_query(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 0) + 1, false) "  # noqa: S608
                    f"FROM {table}"
                )
    counts = {key: len(document[key]) for key in ("users", "channels", "memberships", "messages", "read_markers")}
    return {**counts, "reactions": reactions}


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
    # the mentions table counts unread mentions: the same rows as the send path writes
    mentioned = [
        Mention(user_id=user_id, message_id=message["id"], room=message["room"])
        for message in messages
        for user_id in message["mentions"]
    ]
    if mentioned:
        await Mention.bulk_create(mentioned, using_db=connection)


async def _insert_reactions(connection, messages: list[dict]) -> int:
    """One row per person and emoji of each message's `reactions` (absent from exports made before reactions), in
    the export's order, so that each message's emojis keep their order of first use; a repeated person is one row
    (a reaction is at most once each, as PUT makes it)."""
    rows: dict[tuple[int, int, str], Reaction] = {}
    for message in messages:
        for reaction in message.get("reactions") or []:
            for user_id in reaction["user_ids"]:
                key = (message["id"], user_id, reaction["emoji"])
                rows.setdefault(key, Reaction(message_id=key[0], user_id=key[1], emoji=key[2]))
    if rows:
        await Reaction.bulk_create(list(rows.values()), using_db=connection)
    return len(rows)


def _column_value(message: dict, name: str) -> object:
    if name == "timestamp":
        return datetime.fromisoformat(message[name])
    if name == "mentions":  # stored as the ids' text (models.mention_text)
        return mention_text(message[name])
    if name == "edited_at":  # absent from exports made before messages could change
        return _datetime(message.get(name))
    return message.get(name, False if name == "deleted" else None)


def _datetime(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _check(document: object) -> None:
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ImportRefused("not a chat export")
    if document.get("version") != VERSION:
        raise ImportRefused(f"export version {document.get('version')!r}: this chat reads version {VERSION}")
    if document.get("scope") != INSTANCE:
        raise ImportRefused("a one-user export is that person's copy: only a whole-instance export can be imported")
    for key in ("users", "channels", "memberships", "messages", "read_markers"):
        if not isinstance(document.get(key), list):
            raise ImportRefused(f"{key!r} is missing")
    if any("password_hash" not in account for account in document["users"]):
        raise ImportRefused("an export without password hashes cannot restore accounts")
