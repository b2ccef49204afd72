"""Conversations: store-then-publish, history paging and read markers.

The one place that both the HTTP blueprints and the websocket call, so that a message sent either way is
validated, stored, deduplicated and delivered the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from tortoise.connection import get_connection
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from . import json_io
from .broker import Broker, Event
from .db import param, param_prefix, params, select
from .errors import APIError
from .files import attach, check_attachable, with_files
from .models import (
    ADMIN,
    EDIT,
    MEMBER,
    MESSAGE,
    MESSAGE_FIELDS,
    REACT,
    UNREACT,
    Message,
    MessageJSON,
    ReactionJSON,
    ReadMarker,
    mention_text,
    message_json,
    utcnow,
)
from .rooms import Room, admission, direct_room_name_sql, require_user, user_not_found
from .state import state

__all__ = ["require_user", "user_not_found"]  # re-exported: the domain's callers know them from here

# @username at a word boundary: what may come before "@" is no character of a username
MENTION_RE = re.compile(r"(?<![A-Za-z0-9._-])@([A-Za-z0-9._-]{3,80})")
MAX_MENTIONS = 50  # names looked up per message

log = logging.getLogger(__name__)


def inbox_channel(user_id: int) -> str:
    """The broker channel of what concerns one user wherever they are (their activity stream, GET /ws/me): their
    direct messages, their read markers moving, the rooms they join and leave."""
    return f"inbox:{user_id}"


async def publish(room: Room, frame: dict) -> None:
    await state().broker.publish(Event.build(room.channel, frame))


async def publish_to_user(user_id: int, frame: dict) -> None:
    await state().broker.publish(Event.build(inbox_channel(user_id), frame))


async def send_message(
    sender_id: int,
    receiver_id: int,
    content: str,
    client_id: str | None,
    reply_to: int | None = None,
    file_ids: list[int] | None = None,
) -> tuple[dict, bool]:
    """Send a direct message to receiver_id (POST /send-message with receiver_id)."""
    await check_send_rate(sender_id, client_id)
    await require_user(receiver_id)
    return await _send(sender_id, Room.direct(sender_id, receiver_id), content, client_id, reply_to, file_ids)


async def send_to_room(
    sender_id: int,
    name: str,
    content: str,
    client_id: str | None,
    reply_to: int | None = None,
    file_ids: list[int] | None = None,
) -> tuple[dict, bool]:
    """Send a message to the room named `name` (POST /send-message with room, a websocket's message frame):
    403 / 404 as rooms.admission says, 409 room_archived for an archived channel."""
    await check_send_rate(sender_id, client_id)
    admitted = await admission(sender_id, name)
    if admitted.archived:
        raise room_archived()
    if not admitted.room.is_channel:
        await require_user(admitted.room.other_member(sender_id))  # not to a deleted account
    return await _send(sender_id, admitted.room, content, client_id, reply_to, file_ids)


def room_archived() -> APIError:
    return APIError(409, "room_archived", "This channel is archived: it is read-only.")


async def _send(
    sender_id: int,
    room: Room,
    content: str,
    client_id: str | None,
    reply_to: int | None,
    file_ids: list[int] | None = None,
) -> tuple[dict, bool]:
    """Store a message once per (sender, client_id), then deliver it to the room.

    Returns (message, created). A repeated client_id returns the message stored the first time and
    publishes nothing: the first send already delivered it, and a resuming socket replays it from the database.
    """
    if reply_to is not None and not await _is_message_of(room, reply_to):
        raise APIError(400, "validation_error", "reply_to must be a message of the same room.")
    file_ids = file_ids or []
    if file_ids and not (client_id is not None and await Message.exists(sender_id=sender_id, client_id=client_id)):
        await check_attachable(sender_id, room.name, file_ids)  # (a retry's files are attached already)
    mentions = await mentioned_members(room, content)
    stored = await message_writer().store(sender_id, room, content, client_id, mentions, reply_to, file_ids)
    if stored is not None:
        return stored, True
    # not inserted: this client_id is stored already (by an earlier send, or a concurrent one in the same batch)
    existing = await Message.get_or_none(sender_id=sender_id, client_id=client_id)
    if existing is None:
        raise user_not_found()
    return (await with_reactions([existing.public()]))[0], False


def message_writer() -> MessageWriter:
    """The app's one writer: every message and every change to one is stored and published through it."""
    app_state = state()
    if app_state.message_writer is None:
        app_state.message_writer = MessageWriter(app_state.broker, app_state.settings.is_postgres)
    return app_state.message_writer


async def _is_message_of(room: Room, message_id: int) -> bool:
    return await Message.exists(id=message_id, room=room.name, event=MESSAGE)


async def check_send_rate(sender_id: int, client_id: str | None) -> None:
    app_state = state()
    settings = app_state.settings
    key = f"send:{sender_id}"
    # checked and counted in one step (one round trip to Redis; two workers cannot both take the last place)
    wait = await app_state.throttle.take(key, settings.send_limit, settings.send_window_seconds)
    if wait:
        # a retry of a message already stored is not a new message: it is answered even over the limit
        if client_id is not None and await Message.exists(sender_id=sender_id, client_id=client_id):
            return
        raise APIError(
            429,
            "too_many_messages",
            f"You are sending too fast; wait {wait} seconds.",
            {"Retry-After": str(wait)},
        )


async def mentioned_members(room: Room, content: str) -> list[int]:
    """The ids of the room's members that the content names with @username (any case), in id order."""
    keys: set[str] = set()
    for match in MENTION_RE.finditer(content):
        name = match[1].lower()
        keys.update((name, name.rstrip("._-")))  # "@bob." at the end of a sentence names bob
        if len(keys) >= MAX_MENTIONS:
            break
    keys.discard("")
    if not keys:
        return []
    markers = params(2, len(keys) + 1)
    if room.is_channel:
        sql = (
            "SELECT u.id FROM users u JOIN memberships m ON m.user_id = u.id"  # noqa: S608 - markers only
            f" WHERE m.channel_id = {param(1)} AND u.username_key IN ({markers}) ORDER BY u.id"
        )
        values: list = [room.channel_id, *keys]
    else:
        low, high = room.members
        sql = (
            f"SELECT id FROM users WHERE id IN ({param(1)}, {param(len(keys) + 2)})"  # noqa: S608 - markers only
            f" AND username_key IN ({markers}) ORDER BY id"
        )
        values = [low, *keys, high]
    _, rows = await get_connection("default").execute_query(sql, values)
    return [row[0] for row in rows]


MAX_BATCH = 200  # rows in one INSERT: 6 parameters each, far below either database's limit on parameters


class _Settles:
    stored: asyncio.Future

    def settle(self, result: dict | None = None, error: BaseException | None = None) -> None:
        if self.stored.done():  # the sender gave up waiting (its request was cancelled)
            return
        if error is not None:
            self.stored.set_exception(error)
        else:
            self.stored.set_result(result)


# A change to stored messages, run in the writer's transaction (with the room's lock on PostgreSQL): it stores
# the change and its event row, and returns the event's frame, or None when nothing changed (no event)
ChangeApply = Callable[[object, str], Awaitable[dict | None]]


@dataclass(slots=True)
class _Change(_Settles):
    room: Room
    apply: ChangeApply
    stored: asyncio.Future  # the event's frame, or None


@dataclass(slots=True)
class _Pending(_Settles):
    sender_id: int
    room: Room
    content: str
    client_id: str | None
    mentions: list[int]
    reply_to: int | None
    file_ids: list[int]
    timestamp: datetime
    stored: asyncio.Future  # the message dict, or None when (sender_id, client_id) was stored already
    files: list = field(default_factory=list)  # the attached files' JSON, once stored

    @property
    def receiver_id(self) -> int | None:
        return None if self.room.is_channel else self.room.other_member(self.sender_id)

    def payload(self, message_id: int) -> MessageJSON:
        return message_json(
            message_id,
            self.sender_id,
            self.receiver_id,
            self.room.name,
            self.content,
            self.timestamp,
            self.client_id,
            self.mentions,
            reply_to=self.reply_to,
            files=self.files,
        )


class MessageWriter:
    """Stores the messages of every concurrent send in one INSERT (one transaction), then publishes them.

    One trip to the database and one commit per batch instead of per message, and no ORM on the way: at low load
    a batch is one message written at once, under load the messages that arrive while a batch is being written
    make up the next one. One task writes the batches one after another and publishes each batch's messages in
    id order before it writes the next, so each room's messages are published in id order (a socket that resumes
    with ?after relies on it), and a message once stored is published even if the request that sent it is gone.

    Changes to messages (edit, delete, reactions: chat/changes.py) go through the same queue, each in a
    transaction of its own between the batches, so that their events are published in id order with the
    messages around them.
    """

    def __init__(self, broker: Broker, is_postgres: bool) -> None:
        self._broker = broker
        self._is_postgres = is_postgres
        self._queue: list[_Pending | _Change] = []
        self._task: asyncio.Task | None = None

    async def store(
        self,
        sender_id: int,
        room: Room,
        content: str,
        client_id: str | None,
        mentions: list[int],
        reply_to: int | None = None,
        file_ids: list[int] | None = None,
    ) -> dict | None:
        """The stored message, or None if this sender's client_id is stored already. The files of file_ids
        (checked by files.check_attachable) are attached in the message's transaction."""
        future = asyncio.get_running_loop().create_future()
        pending = _Pending(sender_id, room, content, client_id, mentions, reply_to, file_ids or [], utcnow(), future)
        return await self._enqueue(pending)

    async def change(self, room: Room, apply: ChangeApply) -> dict | None:
        """Run a change to the room's messages in its turn; the published event's frame, or None (no change)."""
        return await self._enqueue(_Change(room, apply, asyncio.get_running_loop().create_future()))

    async def _enqueue(self, item: _Pending | _Change) -> dict | None:
        self._queue.append(item)
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="message-writer")
        return await item.stored

    async def _drain(self) -> None:
        batch: list[_Pending | _Change] = []
        try:
            while self._queue:
                if isinstance(self._queue[0], _Change):
                    batch, self._queue = self._queue[:1], self._queue[1:]
                    await self._apply(batch[0])
                    continue
                size = next(
                    (n for n, item in enumerate(self._queue[:MAX_BATCH]) if isinstance(item, _Change)),
                    min(len(self._queue), MAX_BATCH),
                )
                batch, self._queue = self._queue[:size], self._queue[size:]
                await self._write(batch)
        except BaseException as exc:  # cancelled (the server stops): nobody may wait for ever
            for pending in [*batch, *self._queue]:
                pending.settle(error=exc)
            self._queue = []
            raise
        finally:
            self._task = None

    async def _apply(self, change: _Change) -> None:
        try:
            async with in_transaction() as connection:
                if self._is_postgres:  # as for messages (_insert): the event's id is allocated and committed in turn
                    await connection.execute_query("SELECT pg_advisory_xact_lock($1)", [_room_lock_key(change.room)])
                frame = await change.apply(connection, "$" if self._is_postgres else "?")
        except Exception as exc:  # noqa: BLE001 - the caller gets the failure (its APIError, or a 503)
            change.settle(error=exc)
            return
        if frame is not None:
            try:
                await self._broker.publish(Event.build(change.room.channel, frame))
            except Exception:  # stored all the same: sockets replay it from the database when they resume
                log.exception("publishing event %s failed", frame["id"])
        change.settle(frame)

    async def _write(self, batch: list[_Pending]) -> None:
        try:
            inserted = await self._insert(batch)
        except IntegrityError:
            # a receiver does not exist (any more): store them one by one, so that only its sender gets the 404
            if len(batch) > 1:
                for pending in batch:
                    await self._write([pending])
            else:
                batch[0].settle(error=user_not_found())
            return
        except Exception as exc:  # noqa: BLE001 - each sender gets the failure (a locked database becomes 503)
            for pending in batch:
                pending.settle(error=exc)
            return
        stored_at = time.time()  # wall clock: the sockets that measure the fan-out may be in other workers
        metrics = state().metrics
        metrics.messages_stored(sum(message_id is not None for message_id in inserted))
        messages = [None if message_id is None else pending.payload(message_id) for pending, message_id in
                    zip(batch, inserted, strict=True)]  # fmt: skip
        try:
            events = [event for pending, message in zip(batch, messages, strict=True) if message is not None
                      for event in _delivery_events(pending, message, stored_at)]  # fmt: skip
            await self._broker.publish_many(events)  # in id order, in one round trip to Redis
        except Exception:  # stored all the same: sockets replay them from the database when they resume
            log.exception("publishing messages %s failed", [message["id"] for message in messages if message])
        else:
            published = time.time() - stored_at
            for _ in filter(None, messages):
                metrics.message_published(published)
        for pending, message in zip(batch, messages, strict=True):
            pending.settle(message)

    async def _insert(self, batch: list[_Pending]) -> list[int | None]:
        """INSERT the batch in one statement; the new id of each row, None where its client_id already existed.
        The mentions and files of the batch go in with it, in the same transaction."""
        rows = [_row(pending) for pending in batch]
        keys = sorted({_room_lock_key(pending.room) for pending in batch}) if self._is_postgres else []
        if not any(pending.mentions or pending.file_ids for pending in batch):
            if self._is_postgres:  # the rooms' locks, the rows and the commit in one statement: see _INSERT_LOCKED
                arguments = [*(list(column) for column in zip(*rows, strict=True)), keys]
                returned = await get_connection("default").execute_query_dict(_INSERT_LOCKED, arguments)
            else:  # SQLite has one writer at a time: the ids of a statement are committed in order
                returned = await get_connection("default").execute_query_dict(*_insert_values(rows, "?"))
            return _match_returned(batch, returned)
        mark = "$" if self._is_postgres else "?"
        async with in_transaction() as connection:
            if self._is_postgres:
                # PostgreSQL hands out ids to concurrent transactions that may commit in another order: a socket
                # that saw 11 could miss 10, still uncommitted. Advisory locks on the batch's rooms (in one order,
                # so that two writers cannot deadlock) make allocation and commit one step per room. One statement
                # takes them all (a round trip per room held the locks ~8x longer): in the array's order, as the
                # ORDER BY makes the volatile lock calls run after the sort.
                await connection.execute_query(_LOCK_ROOMS_IN_ORDER, [keys])
            returned = await connection.execute_query_dict(*_insert_values(rows, mark))
            ids = _match_returned(batch, returned)
            await _insert_mentions(connection, mark, batch, ids)
            for pending, message_id in zip(batch, ids, strict=True):
                if message_id is not None and pending.file_ids:
                    pending.files = await attach(
                        connection, mark, message_id, pending.sender_id, pending.room.name, pending.file_ids
                    )
        return ids


# a new message's columns, with the PostgreSQL type of each (_INSERT_LOCKED passes one array per column)
_COLUMN_TYPES = {
    "sender_id": "int", "receiver_id": "int", "room": "text", "content": "text",
    "timestamp": "timestamptz", "client_id": "text", "mentions": "text", "reply_to": "int",
}  # fmt: skip
_COLUMNS = tuple(_COLUMN_TYPES)
_COLUMN_LIST = ", ".join(_COLUMNS)


def _row(pending: _Pending) -> tuple:
    """A message's values, in _COLUMNS' order."""
    return (
        pending.sender_id, pending.receiver_id, pending.room.name, pending.content,
        pending.timestamp, pending.client_id, mention_text(pending.mentions), pending.reply_to,
    )  # fmt: skip


def _insert_values(rows: list[tuple], mark: str) -> tuple[str, list]:
    """An INSERT of the rows as one VALUES list, and its values: (sql, values)."""
    markers = [
        "(" + ", ".join(f"{mark}{number * len(_COLUMNS) + column + 1}" for column in range(len(_COLUMNS))) + ")"
        for number in range(len(rows))
    ]
    sql = (
        f"INSERT INTO messages ({_COLUMN_LIST}) VALUES {', '.join(markers)}"  # noqa: S608 - markers only
        " ON CONFLICT DO NOTHING RETURNING id, sender_id, client_id"
    )
    return sql, [value for row in rows for value in row]


def _match_returned(batch: list[_Pending], returned: list[dict]) -> list[int | None]:
    """Which row got which id. The order of RETURNING rows is unspecified, but the ids of one INSERT grow in
    the order of its VALUES; a row skipped ON CONFLICT has a client_id, so a NULL one always matches."""
    inserted = sorted((row["id"], row["sender_id"], row["client_id"]) for row in returned)
    ids: list[int | None] = []
    position = 0
    for pending in batch:
        if position < len(inserted) and inserted[position][1:] == (pending.sender_id, pending.client_id):
            ids.append(inserted[position][0])
            position += 1
        else:
            ids.append(None)
    return ids


async def _insert_mentions(connection, mark: str, batch: list[_Pending], ids: list[int | None]) -> None:
    rows = [
        (user_id, message_id, pending.room.name)
        for pending, message_id in zip(batch, ids, strict=True)
        if message_id is not None
        for user_id in pending.mentions
    ]
    for start in range(0, len(rows), MAX_BATCH):
        chunk = rows[start : start + MAX_BATCH]
        markers = ", ".join(f"({mark}{3 * n + 1}, {mark}{3 * n + 2}, {mark}{3 * n + 3})" for n in range(len(chunk)))
        values = [value for row in chunk for value in row]
        await connection.execute_query(f"INSERT INTO mentions (user_id, message_id, room) VALUES {markers}", values)  # noqa: S608


def _delivery_events(pending: _Pending, message: dict, stored_at: float) -> list[Event]:
    """The message's event on each of its delivery channels, its frame encoded once for all."""
    channels = _delivery_channels(pending)
    event = Event.build(channels[0], {"type": "message", "message": message}, stored_at)
    return [event if channel == event.channel else event.on(channel) for channel in channels]


def _delivery_channels(pending: _Pending) -> tuple[str, ...]:
    """Where a new message is published: its room, and for a direct message the inboxes of both people (their
    activity streams hear of a conversation that is new to them). A channel's message is published once: the
    activity streams of its members listen to the room itself."""
    if pending.room.is_channel:
        return (pending.room.channel,)
    return (pending.room.channel, *(inbox_channel(user_id) for user_id in set(pending.room.members)))


def _lock_rooms_in_order(keys_parameter: int) -> str:
    """The statement that takes the advisory locks of the rooms whose sorted keys are parameter $keys_parameter."""
    return (
        f"SELECT pg_advisory_xact_lock(key) FROM unnest(${keys_parameter}::bigint[])"  # noqa: S608 - a number
        " WITH ORDINALITY AS locks(key, position) ORDER BY position"
    )


_LOCK_ROOMS_IN_ORDER = _lock_rooms_in_order(1)

# A batch with no mentions and no files on PostgreSQL: one statement, committed by itself, so one round trip where
# a transaction took four and held the rooms' locks for three of them (BEGIN, the locks, the INSERT, COMMIT: with
# two workers their writers took turns on the locks for as long). The locks come first, in key order: the
# materialized CTE is computed before its one row joins the new rows, and the sort waits for every joined row,
# so no id is drawn before every lock is held. The statement's commit frees them, so each room's ids are still
# allocated and committed in turn. The rows are the arrays' elements in order (ids grow in that order, as
# _match_returned expects), and the text is the same for every batch size: one prepared statement.
_COLUMN_ARRAYS = ", ".join(f"${number}::{kind}[]" for number, kind in enumerate(_COLUMN_TYPES.values(), start=1))
_INSERT_LOCKED = (
    "WITH locked AS MATERIALIZED"  # noqa: S608 - column names and markers only
    f" (SELECT count(*) AS rooms FROM ({_lock_rooms_in_order(len(_COLUMNS) + 1)}) AS taking)"
    f" INSERT INTO messages ({_COLUMN_LIST}) SELECT {_COLUMN_LIST}"
    f" FROM locked, unnest({_COLUMN_ARRAYS}) WITH ORDINALITY AS m({_COLUMN_LIST}, position) ORDER BY m.position"
    " ON CONFLICT DO NOTHING RETURNING id, sender_id, client_id"
)


def _room_lock_key(room: Room) -> int:
    return int.from_bytes(hashlib.blake2b(room.name.encode(), digest_size=8).digest(), "big", signed=True)


async def history(
    me: int, other: int, *, before: int | None = None, after: int | None = None, limit: int = 50
) -> tuple[list[dict], bool]:
    """A page of the conversation, oldest first, and whether more lie beyond it in the paging direction.

    Every shape is a range scan of the (room, id) index, so page cost does not grow with the conversation.
    """
    await require_user(other, deleted_too=True)
    return await room_history(Room.direct(me, other), before=before, after=after, limit=limit)


async def room_history(
    room: Room, *, before: int | None = None, after: int | None = None, limit: int = 50
) -> tuple[list[dict], bool]:
    """A page of a room the caller was admitted to (rooms.admit), as `history` describes."""
    if after is not None:
        rows = await _page(room, after=after, limit=limit + 1)
        return rows[:limit], len(rows) > limit
    rows = await _page(room, before=before, limit=limit + 1, newest_first=True)
    return rows[:limit][::-1], len(rows) > limit


async def room_history_json(
    room: Room, *, before: int | None = None, after: int | None = None, limit: int = 50
) -> bytes:
    """`room_history`'s page as the body of GET /get-messages' answer ({"messages", "has_more"}), from this
    worker's page cache while the room's newest row is the one it was built at (page_cache.py)."""
    pages = state().pages
    key, generation = (room.name, before, after, limit), pages.generation
    version = await newest_id(room)  # read before the page: a change in between only makes the next one miss
    body = pages.get(key, version)
    if body is None:
        messages, has_more = await room_history(room, before=before, after=after, limit=limit)
        body = json_io.encode({"messages": messages, "has_more": has_more})
        pages.put(key, version, body, generation)
    return body


async def messages_after(room: Room, after: int, limit: int, up_to: int | None = None) -> list[dict]:
    """Stored messages of a room with after < id (<= up_to), oldest first, without the changes (Socket.IO's
    replay: its clients know only messages)."""
    return await _page(room, after=after, up_to=up_to, limit=limit)


async def frames_after(room: Room, after: int, limit: int, up_to: int | None = None) -> list[dict]:
    """The websocket's replay: the frames of a room's messages and changes with after < id (<= up_to), in id
    order, each as it was published except that a message and an edit carry the message as it is now.
    One range of the (room, id) index, whatever mixes messages and events."""
    mark = param_prefix()
    values: list = [room.name, after]
    conditions = [f"room = {mark}1", f"id > {mark}2"]
    if up_to is not None:
        values.append(up_to)
        conditions.append(f"id <= {mark}3")
    values.append(limit)
    sql = (
        f"SELECT {MESSAGE_COLUMNS}, event, target_id FROM messages WHERE {' AND '.join(conditions)}"  # noqa: S608
        f" ORDER BY id LIMIT {mark}{len(values)}"
    )
    rows = await select(sql, values)
    width = len(MESSAGE_FIELDS)
    edited = [row[width + 1] for row in rows if row[width] == EDIT]
    messages = {message["id"]: message for message in [message_json(*row[:width]) for row in rows]}
    if edited:
        messages.update({message["id"]: message for message in await messages_by_id(edited)})
    await with_reactions([message for message in messages.values() if not message["deleted"]])
    frames = []
    for row in rows:
        event_id, kind, target = row[0], row[width], row[width + 1]
        if kind == MESSAGE:
            frames.append({"type": "message", "message": messages[event_id]})
        else:
            frames.append(change_frame(event_id, kind, target, messages.get(target), row[1], row[4]))
    return frames


def change_frame(
    event_id: int, kind: str, target_id: int, message: MessageJSON | None, user_id: int, emoji: str
) -> dict:
    """The frame of a change, as published and as replayed (API.md: edit, delete, reaction)."""
    if kind == EDIT:
        return {"type": "edit", "id": event_id, "message": message}
    if kind in (REACT, UNREACT):
        return {
            "type": "reaction",
            "id": event_id,
            "message_id": target_id,
            "emoji": emoji,
            "user_id": user_id,
            "added": kind == REACT,
        }
    return {"type": "delete", "id": event_id, "message_id": target_id}


async def messages_by_id(ids: list[int]) -> list[MessageJSON]:
    """The messages (not changes) with these ids, as they are now, without their reactions."""
    markers = params(1, len(ids))
    sql = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id IN ({markers}) AND event = ''"  # noqa: S608
    _, rows = await get_connection("default").execute_query(sql, list(ids))
    return [message_json(*row) for row in rows]


async def with_reactions(messages: list[MessageJSON], connection=None) -> list[MessageJSON]:
    """Fill in each message's computed fields (models.COMPUTED_FIELDS): its files (files.with_files) and its
    reactions."""
    await with_files(messages, connection)
    return await _fill_reactions(messages, connection)


async def _fill_reactions(messages: list[MessageJSON], connection=None) -> list[MessageJSON]:
    """Each message's reactions: one query for the lot, counted by emoji in the order of first use."""
    by_id = {message["id"]: message for message in messages}
    if not by_id:
        return messages
    markers = params(1, len(by_id))
    sql = f"SELECT message_id, emoji, user_id FROM reactions WHERE message_id IN ({markers}) ORDER BY id"  # noqa: S608
    _, rows = await (connection or get_connection("default")).execute_query(sql, list(by_id))
    grouped: dict[int, dict[str, ReactionJSON]] = {}
    for message_id, emoji, user_id in rows:
        reaction = grouped.setdefault(message_id, {}).setdefault(emoji, {"emoji": emoji, "count": 0, "user_ids": []})
        reaction["count"] += 1
        reaction["user_ids"].append(user_id)
    for message_id, reactions in grouped.items():
        by_id[message_id]["reactions"] = list(reactions.values())
    return messages


MESSAGE_COLUMNS = ", ".join(MESSAGE_FIELDS)


async def _page(
    room: Room,
    *,
    limit: int,
    after: int | None = None,
    before: int | None = None,
    up_to: int | None = None,
    newest_first: bool = False,
) -> list[MessageJSON]:
    """Messages of a room in id order (or newest first) within the bounds, as message_json() builds them, with
    their reactions; the changes' event rows are left out.

    Plain SQL, not the ORM: building the query and a model per row was most of a history page's time.
    """
    mark = param_prefix()
    values: list = [room.name]
    conditions = [f"room = {mark}1", "event = ''"]
    for operator, bound in ((">", after), ("<", before), ("<=", up_to)):
        if bound is not None:
            values.append(bound)
            conditions.append(f"id {operator} {mark}{len(values)}")
    values.append(limit)
    sql = (
        f"SELECT {MESSAGE_COLUMNS}, {_REACTED}, {_WITH_FILES} FROM messages WHERE {' AND '.join(conditions)}"  # noqa: S608
        f" ORDER BY id {'DESC' if newest_first else 'ASC'} LIMIT {mark}{len(values)}"
    )
    # rows as the driver gives them (sqlite3.Row, asyncpg Record), their columns in MESSAGE_FIELDS order: passed
    # to message_json by position, not made into dicts first and unpacked by name, which took twice as long
    rows = await select(sql, values)
    messages = [message_json(*row[:-2]) for row in rows]
    # the files' and the reactions' queries only for the messages that have some: most pages have none of either,
    # and then they are not sent
    await with_files([message for message, row in zip(messages, rows, strict=True) if row[-1]])
    await _fill_reactions([message for message, row in zip(messages, rows, strict=True) if row[-2]])
    return messages


# whether a message has reactions, files: columns of the page's query, probes of the (message_id, ...) indexes
_REACTED = "EXISTS (SELECT 1 FROM reactions WHERE reactions.message_id = messages.id)"
_WITH_FILES = "EXISTS (SELECT 1 FROM files WHERE files.message_id = messages.id)"


async def newest_id(room: Room) -> int:
    """The id of the room's newest row, message or change event (0 for none): one probe of the (room, id) index."""
    rows = await select(f"SELECT max(id) FROM messages WHERE room = {param(1)}", [room.name])  # noqa: S608
    return rows[0][0] or 0


async def mark_read(me: int, other: int, up_to: int) -> int:
    """Move my read marker in the room with `other` forward to `up_to` (never backwards).

    The marker is clamped to the newest message of the room, so nothing not yet sent counts as read.
    Returns the marker after the move; a `read` frame goes to the room when it moved.
    """
    await require_user(other, deleted_too=True)
    return await mark_room_read(me, Room.direct(me, other), up_to)


async def mark_room_read(me: int, room: Room, up_to: int) -> int:
    """Move my read marker in a room I was admitted to (rooms.admit), as `mark_read` describes; my activity
    streams hear of it too (a read on one device clears the badge on the others)."""
    up_to = min(up_to, await newest_id(room))
    moved = await _advance_marker(me, room.name, up_to)
    if moved:
        frame = {"type": "read", "user_id": me, "up_to": up_to}
        await publish(room, frame)
        await publish_to_user(me, {**frame, "room": room.name})
        return up_to
    marker = await ReadMarker.get_or_none(user_id=me, room=room.name).values_list("up_to", flat=True)
    return marker or 0


async def _advance_marker(user_id: int, room: str, up_to: int) -> bool:
    # a conditional UPDATE: two concurrent marks can only ever move the marker forward
    if await ReadMarker.filter(user_id=user_id, room=room, up_to__lt=up_to).update(up_to=up_to, updated_at=utcnow()):
        return True
    if up_to <= 0 or await ReadMarker.exists(user_id=user_id, room=room):
        return False
    try:
        await ReadMarker.create(user_id=user_id, room=room, up_to=up_to)
    except IntegrityError:  # created concurrently: fall back to the conditional update
        return bool(await ReadMarker.filter(user_id=user_id, room=room, up_to__lt=up_to).update(up_to=up_to))
    return True


async def users_with_unread(me: int) -> list[dict]:
    """Everyone but me, by username, each with the count of their messages to me after my read marker, and of
    those that mention me.

    One query whatever the number of users; each count is a range scan of an index ((room, id) for messages,
    (user, room, message) for mentions) that starts at my marker, so its cost follows the unread messages, not
    the length of the conversation.
    """
    me_ = param(1)
    room = direct_room_name_sql("u.id", me_)
    marker = f"COALESCE((SELECT r.up_to FROM read_markers r WHERE r.user_id = {me_} AND r.room = {room}), 0)"  # noqa: S608
    sql = f"""
        SELECT u.id AS id, u.username AS username, u.is_admin AS is_admin, u.deactivated_at AS deactivated_at,
               u.deleted_at AS deleted_at,
          (SELECT COUNT(*) FROM messages m
            WHERE m.room = {room} AND m.sender_id = u.id AND m.id > {marker} AND m.event = '') AS unread,
          (SELECT COUNT(*) FROM mentions n
            WHERE n.user_id = {me_} AND n.room = {room} AND n.message_id > {marker}) AS mentions
        FROM users u WHERE u.id <> {me_} ORDER BY u.username_key, u.id
    """  # noqa: S608 - only parameter markers are interpolated
    rows = await get_connection("default").execute_query_dict(sql, [me])
    online = await state().presence.online([row["id"] for row in rows])
    return [
        {
            "id": row["id"],
            "username": row["username"],
            "online": row["id"] in online,
            "unread": int(row["unread"]),
            "mentions": int(row["mentions"]),
            "role": ADMIN if row["is_admin"] else MEMBER,
            "deactivated": row["deactivated_at"] is not None,
            "deleted": row["deleted_at"] is not None,
        }
        for row in rows
    ]
