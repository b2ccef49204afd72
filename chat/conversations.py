"""Conversations: store-then-publish, history paging and read markers.

The one place that both the HTTP blueprints and the websocket call, so that a message sent either way is
validated, stored, deduplicated and delivered the same way.
"""

from __future__ import annotations

import asyncio
import hashlib

from tortoise.connection import get_connection
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from .broker import Event
from .db import param
from .errors import APIError
from .models import Message, ReadMarker, User, room_for, utcnow
from .security import throttled
from .state import state


def user_not_found() -> APIError:
    return APIError(404, "user_not_found", "No such user.")


async def require_user(user_id: int) -> None:
    if not await User.exists(id=user_id):
        raise user_not_found()


def room_channel(room: str) -> str:
    return f"room:{room}"


async def publish(room: str, frame: dict) -> None:
    await state().broker.publish(Event.build(room_channel(room), frame))


def room_lock(room: str) -> asyncio.Lock:
    """Held from INSERT to publish, so that one room's messages are published in id order.

    Without it, two concurrent sends could publish 11 before 10: a socket that saw 11 and then resumed
    with ?after=11 would never get 10.
    """
    locks = state().room_locks
    lock = locks.get(room)
    if lock is None:
        lock = locks[room] = asyncio.Lock()
    return lock


async def send_message(sender_id: int, receiver_id: int, content: str, client_id: str | None) -> tuple[dict, bool]:
    """Store a message once per (sender, client_id), then deliver it to the room.

    Returns (message, created). A repeated client_id returns the message stored the first time and
    publishes nothing: the first send already delivered it, and a resuming socket replays it from the database.
    """
    if client_id is not None:
        existing = await Message.get_or_none(sender_id=sender_id, client_id=client_id)
        if existing is not None:
            return existing.public(), False
    await _check_send_rate(sender_id)
    await require_user(receiver_id)
    # Shielded: when the caller is cancelled mid-send (its client hung up), a message stored by then must
    # still be published, or the room's live sockets would never get it. The task holds the room lock
    # until it has published, so the order of publication stays the order of ids.
    return await asyncio.shield(_store_and_publish(sender_id, receiver_id, content, client_id))


async def _store_and_publish(
    sender_id: int, receiver_id: int, content: str, client_id: str | None
) -> tuple[dict, bool]:
    room = room_for(sender_id, receiver_id)
    async with room_lock(room):
        try:
            message = await _insert_in_order(
                room, sender_id=sender_id, receiver_id=receiver_id, content=content, client_id=client_id
            )
        except IntegrityError:
            # the same client_id raced in from another request (or the receiver was just deleted)
            existing = await Message.get_or_none(sender_id=sender_id, client_id=client_id) if client_id else None
            if existing is None:
                raise user_not_found() from None
            return existing.public(), False
        payload = message.public()
        await publish(room, {"type": "message", "message": payload})
    return payload, True


async def _check_send_rate(sender_id: int) -> None:
    app_state = state()
    settings = app_state.settings
    wait = await throttled(app_state.throttle, f"send:{sender_id}", settings.send_limit, settings.send_window_seconds)
    if wait:
        raise APIError(
            429,
            "too_many_messages",
            f"You are sending too fast; wait {wait} seconds.",
            {"Retry-After": str(wait)},
        )


async def _insert_in_order(room: str, **fields) -> Message:
    """INSERT so that a room's messages become visible in id order, also across processes.

    SQLite has one writer at a time, so ids commit in order. PostgreSQL hands out ids from a sequence to
    concurrent transactions that may commit in another order: a socket that saw 11 could miss 10, still
    uncommitted. A transaction-scoped advisory lock per room makes allocation and commit one step.
    """
    if not state().settings.is_postgres:
        return await Message.create(room=room, timestamp=utcnow(), **fields)
    async with in_transaction() as connection:
        await connection.execute_query("SELECT pg_advisory_xact_lock($1)", [_room_lock_key(room)])
        return await Message.create(room=room, timestamp=utcnow(), using_db=connection, **fields)


def _room_lock_key(room: str) -> int:
    return int.from_bytes(hashlib.blake2b(room.encode(), digest_size=8).digest(), "big", signed=True)


async def history(
    me: int, other: int, *, before: int | None = None, after: int | None = None, limit: int = 50
) -> tuple[list[dict], bool]:
    """A page of the conversation, oldest first, and whether more lie beyond it in the paging direction.

    Every shape is a range scan of the (room, id) index, so page cost does not grow with the conversation.
    """
    await require_user(other)
    query = Message.filter(room=room_for(me, other))
    if after is not None:
        rows = await query.filter(id__gt=after).order_by("id").limit(limit + 1)
        has_more = len(rows) > limit
        rows = rows[:limit]
    else:
        if before is not None:
            query = query.filter(id__lt=before)
        rows = await query.order_by("-id").limit(limit + 1)
        has_more = len(rows) > limit
        rows = rows[:limit][::-1]
    return [row.public() for row in rows], has_more


async def messages_after(room: str, after: int, limit: int, up_to: int | None = None) -> list[dict]:
    """Stored messages of a room with after < id (<= up_to), oldest first: the websocket's replay."""
    query = Message.filter(room=room, id__gt=after)
    if up_to is not None:
        query = query.filter(id__lte=up_to)
    return [row.public() for row in await query.order_by("id").limit(limit)]


async def newest_id(room: str) -> int:
    return await Message.filter(room=room).order_by("-id").first().values_list("id", flat=True) or 0


async def mark_read(me: int, other: int, up_to: int) -> int:
    """Move my read marker in the room with `other` forward to `up_to` (never backwards).

    The marker is clamped to the newest message of the room, so nothing not yet sent counts as read.
    Returns the marker after the move; a `read` frame goes to the room when it moved.
    """
    await require_user(other)
    room = room_for(me, other)
    up_to = min(up_to, await newest_id(room))
    moved = await _advance_marker(me, room, up_to)
    if moved:
        await publish(room, {"type": "read", "user_id": me, "up_to": up_to})
        return up_to
    marker = await ReadMarker.get_or_none(user_id=me, room=room).values_list("up_to", flat=True)
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
    room = (
        f"'dm-' || CASE WHEN u.id < {me_} THEN u.id ELSE {me_} END"
        f" || '-' || CASE WHEN u.id < {me_} THEN {me_} ELSE u.id END"
    )
    sql = f"""
        SELECT u.id AS id, u.username AS username,
          (SELECT COUNT(*) FROM messages m
            WHERE m.room = {room} AND m.sender_id = u.id
              AND m.id > COALESCE((SELECT r.up_to FROM read_markers r
                                    WHERE r.user_id = {me_} AND r.room = {room}), 0)) AS unread
        FROM users u WHERE u.id <> {me_} ORDER BY u.username_key, u.id
    """  # noqa: S608 - only parameter markers are interpolated
    rows = await get_connection("default").execute_query_dict(sql, [me])
    online = await state().presence.online([row["id"] for row in rows])
    return [
        {"id": row["id"], "username": row["username"], "online": row["id"] in online, "unread": int(row["unread"])}
        for row in rows
    ]
