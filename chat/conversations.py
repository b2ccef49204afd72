"""Conversations: store-then-publish, history paging and read markers.

The one place that both the HTTP blueprints and the websocket call, so that a message sent either way is
validated, stored, deduplicated and delivered the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime

from tortoise.connection import get_connection
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from .broker import Broker, Event
from .db import param, param_prefix
from .errors import APIError
from .models import ADMIN, MEMBER, MESSAGE_FIELDS, Message, MessageJSON, ReadMarker, User, message_json, utcnow
from .rooms import Room, direct_room_name_sql
from .state import state

log = logging.getLogger(__name__)


def user_not_found() -> APIError:
    return APIError(404, "user_not_found", "No such user.")


async def require_user(user_id: int, *, deleted_too: bool = False) -> None:
    """404 unless the user exists and did not delete their account (`deleted_too`: also one that did, whose
    history others still read). Ids seen to exist are remembered: a deleted account is forgotten by every worker
    (accounts.py), and rows are never removed by the API (where one is deleted by hand, the foreign keys still
    refuse to store a message for it)."""
    known = state().known_users
    if user_id in known:
        return
    deleted = await User.filter(id=user_id).values_list("deleted_at", flat=True)
    if not deleted or (deleted[0] is not None and not deleted_too):
        raise user_not_found()
    if deleted[0] is None:
        known.add(user_id)


async def publish(room: Room, frame: dict) -> None:
    await state().broker.publish(Event.build(room.channel, frame))


async def send_message(sender_id: int, receiver_id: int, content: str, client_id: str | None) -> tuple[dict, bool]:
    """Store a message once per (sender, client_id), then deliver it to the room.

    Returns (message, created). A repeated client_id returns the message stored the first time and
    publishes nothing: the first send already delivered it, and a resuming socket replays it from the database.
    """
    app_state = state()
    writer = app_state.message_writer
    if writer is None:
        writer = app_state.message_writer = MessageWriter(app_state.broker, app_state.settings.is_postgres)
    await _check_send_rate(sender_id, client_id)
    await require_user(receiver_id)
    stored = await writer.store(sender_id, receiver_id, content, client_id)
    if stored is not None:
        return stored, True
    # not inserted: this client_id is stored already (by an earlier send, or a concurrent one in the same batch)
    existing = await Message.get_or_none(sender_id=sender_id, client_id=client_id)
    if existing is None:
        raise user_not_found()
    return existing.public(), False


async def _check_send_rate(sender_id: int, client_id: str | None) -> None:
    app_state = state()
    settings = app_state.settings
    key = f"send:{sender_id}"
    wait = await app_state.throttle.retry_after(key, settings.send_limit, settings.send_window_seconds)
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
    await app_state.throttle.hit(key, settings.send_window_seconds)


MAX_BATCH = 200  # rows in one INSERT: 6 parameters each, far below either database's limit on parameters


@dataclass(slots=True)
class _Pending:
    sender_id: int
    receiver_id: int
    content: str
    client_id: str | None
    timestamp: datetime
    stored: asyncio.Future  # the message dict, or None when (sender_id, client_id) was stored already

    @property
    def room(self) -> Room:
        return Room.direct(self.sender_id, self.receiver_id)

    def payload(self, message_id: int) -> MessageJSON:
        return message_json(
            message_id, self.sender_id, self.receiver_id, self.room.name, self.content, self.timestamp, self.client_id
        )

    def settle(self, result: dict | None = None, error: BaseException | None = None) -> None:
        if self.stored.done():  # the sender gave up waiting (its request was cancelled)
            return
        if error is not None:
            self.stored.set_exception(error)
        else:
            self.stored.set_result(result)


class MessageWriter:
    """Stores the messages of every concurrent send in one INSERT (one transaction), then publishes them.

    One trip to the database and one commit per batch instead of per message, and no ORM on the way: at low load
    a batch is one message written at once, under load the messages that arrive while a batch is being written
    make up the next one. One task writes the batches one after another and publishes each batch's messages in
    id order before it writes the next, so each room's messages are published in id order (a socket that resumes
    with ?after relies on it), and a message once stored is published even if the request that sent it is gone.
    """

    def __init__(self, broker: Broker, is_postgres: bool) -> None:
        self._broker = broker
        self._is_postgres = is_postgres
        self._queue: list[_Pending] = []
        self._task: asyncio.Task | None = None

    async def store(self, sender_id: int, receiver_id: int, content: str, client_id: str | None) -> dict | None:
        """The stored message, or None if this sender's client_id is stored already."""
        pending = _Pending(
            sender_id, receiver_id, content, client_id, utcnow(), asyncio.get_running_loop().create_future()
        )
        self._queue.append(pending)
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="message-writer")
        return await pending.stored

    async def _drain(self) -> None:
        batch: list[_Pending] = []
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                await self._write(batch)
        except BaseException as exc:  # cancelled (the server stops): nobody may wait for ever
            for pending in [*batch, *self._queue]:
                pending.settle(error=exc)
            self._queue = []
            raise
        finally:
            self._task = None

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
        state().metrics.messages_stored(sum(message_id is not None for message_id in inserted))
        for pending, message_id in zip(batch, inserted, strict=True):
            if message_id is None:
                pending.settle(None)
                continue
            message = pending.payload(message_id)
            frame = {"type": "message", "message": message}
            try:
                await self._broker.publish(Event.build(pending.room.channel, frame))
            except Exception:  # stored all the same: sockets replay it from the database when they resume
                log.exception("publishing message %s failed", message_id)
            pending.settle(message)

    async def _insert(self, batch: list[_Pending]) -> list[int | None]:
        """INSERT the batch in one statement; the new id of each row, None where its client_id already existed."""
        columns = ("sender_id", "receiver_id", "room", "content", "timestamp", "client_id")
        values, rows = [], []
        mark = "$" if self._is_postgres else "?"
        for number, pending in enumerate(batch):
            first = number * len(columns) + 1
            rows.append("(" + ", ".join(f"{mark}{first + i}" for i in range(len(columns))) + ")")
            values += [pending.sender_id, pending.receiver_id, pending.room.name, pending.content]
            values += [pending.timestamp, pending.client_id]
        sql = (
            f"INSERT INTO messages ({', '.join(columns)}) VALUES {', '.join(rows)}"  # noqa: S608 - markers only
            " ON CONFLICT DO NOTHING RETURNING id, sender_id, client_id"
        )
        if not self._is_postgres:
            # SQLite has one writer at a time: the ids of a statement are committed in order
            returned = await get_connection("default").execute_query_dict(sql, values)
        else:
            # PostgreSQL hands out ids to concurrent transactions that may commit in another order: a socket
            # that saw 11 could miss 10, still uncommitted. Advisory locks on the batch's rooms (in one order,
            # so that two writers cannot deadlock) make allocation and commit one step per room.
            async with in_transaction() as connection:
                for key in sorted({_room_lock_key(pending.room) for pending in batch}):
                    await connection.execute_query("SELECT pg_advisory_xact_lock($1)", [key])
                returned = await connection.execute_query_dict(sql, values)
        return _match_returned(batch, returned)


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


def _room_lock_key(room: Room) -> int:
    return int.from_bytes(hashlib.blake2b(room.name.encode(), digest_size=8).digest(), "big", signed=True)


async def history(
    me: int, other: int, *, before: int | None = None, after: int | None = None, limit: int = 50
) -> tuple[list[dict], bool]:
    """A page of the conversation, oldest first, and whether more lie beyond it in the paging direction.

    Every shape is a range scan of the (room, id) index, so page cost does not grow with the conversation.
    """
    await require_user(other, deleted_too=True)
    room = Room.direct(me, other)
    if after is not None:
        rows = await _page(room, after=after, limit=limit + 1)
        return rows[:limit], len(rows) > limit
    rows = await _page(room, before=before, limit=limit + 1, newest_first=True)
    return rows[:limit][::-1], len(rows) > limit


async def messages_after(room: Room, after: int, limit: int, up_to: int | None = None) -> list[dict]:
    """Stored messages of a room with after < id (<= up_to), oldest first: the websocket's replay."""
    return await _page(room, after=after, up_to=up_to, limit=limit)


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
    """Messages of a room in id order (or newest first) within the bounds, as message_json() builds them.

    Plain SQL, not the ORM: building the query and a model per row was most of a history page's time.
    """
    mark = param_prefix()
    values: list = [room.name]
    conditions = [f"room = {mark}1"]
    for operator, bound in ((">", after), ("<", before), ("<=", up_to)):
        if bound is not None:
            values.append(bound)
            conditions.append(f"id {operator} {mark}{len(values)}")
    values.append(limit)
    sql = (
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {' AND '.join(conditions)}"  # noqa: S608 - markers only
        f" ORDER BY id {'DESC' if newest_first else 'ASC'} LIMIT {mark}{len(values)}"
    )
    # rows as the driver gives them (sqlite3.Row, asyncpg Record), their columns in MESSAGE_FIELDS order: passed
    # to message_json by position, not made into dicts first and unpacked by name, which took twice as long
    _, rows = await get_connection("default").execute_query(sql, values)
    return [message_json(*row) for row in rows]


async def newest_id(room: Room) -> int:
    return await Message.filter(room=room.name).order_by("-id").first().values_list("id", flat=True) or 0


async def mark_read(me: int, other: int, up_to: int) -> int:
    """Move my read marker in the room with `other` forward to `up_to` (never backwards).

    The marker is clamped to the newest message of the room, so nothing not yet sent counts as read.
    Returns the marker after the move; a `read` frame goes to the room when it moved.
    """
    await require_user(other, deleted_too=True)
    room = Room.direct(me, other)
    up_to = min(up_to, await newest_id(room))
    moved = await _advance_marker(me, room.name, up_to)
    if moved:
        await publish(room, {"type": "read", "user_id": me, "up_to": up_to})
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
    """Everyone but me, by username, each with the count of their messages to me after my read marker.

    One query whatever the number of users; each count is a range scan of the (room, id) index that
    starts at my marker, so its cost follows the unread messages, not the length of the conversation.
    """
    me_ = param(1)
    room = direct_room_name_sql("u.id", me_)
    sql = f"""
        SELECT u.id AS id, u.username AS username, u.is_admin AS is_admin, u.deactivated_at AS deactivated_at,
               u.deleted_at AS deleted_at,
          (SELECT COUNT(*) FROM messages m
            WHERE m.room = {room} AND m.sender_id = u.id
              AND m.id > COALESCE((SELECT r.up_to FROM read_markers r
                                    WHERE r.user_id = {me_} AND r.room = {room}), 0)) AS unread
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
            "role": ADMIN if row["is_admin"] else MEMBER,
            "deactivated": row["deactivated_at"] is not None,
            "deleted": row["deleted_at"] is not None,
        }
        for row in rows
    ]
