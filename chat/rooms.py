"""Rooms: where messages go and whom they reach. A room is a value with a kind: "direct" between two users, or
"channel", a named room of any number of members. Its name (dm-{a}-{b}, ch-{id}), in URLs, in the messages,
read_markers and mentions tables and on the broker, is made and read here alone; and here alone is decided who
may enter a room by its name (`admit`) and which rooms a user is in (`rooms_of`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from tortoise.connection import get_connection

from .db import param
from .errors import APIError
from .models import User
from .schemas import MAX_ID
from .state import state

# fullmatch: "$" would let a final "\n" in; [1-9]: no leading zero, so each room has one name
_DIRECT_NAME = re.compile(r"dm-([1-9][0-9]{0,9})-([1-9][0-9]{0,9})")
_CHANNEL_NAME = re.compile(r"ch-([1-9][0-9]{0,9})")
CHANNEL_PREFIX = "ch-"


@dataclass(frozen=True, slots=True)
class Room:
    kind: Literal["direct", "channel"]
    members: tuple[int, ...] = ()  # a direct room's two users, the lower id first; () for a channel
    channel_id: int | None = None  # a channel's id

    @classmethod
    def direct(cls, a: int, b: int) -> Room:
        return cls("direct", (min(a, b), max(a, b)))

    @classmethod
    def of_channel(cls, channel_id: int) -> Room:
        return cls("channel", (), channel_id)

    @property
    def is_channel(self) -> bool:
        return self.kind == "channel"

    @property
    def name(self) -> str:
        if self.is_channel:
            return f"{CHANNEL_PREFIX}{self.channel_id}"
        low, high = self.members
        return f"dm-{low}-{high}"

    @property
    def channel(self) -> str:
        """The broker channel of its messages, typing, read markers, member and room events."""
        return f"room:{self.name}"

    def other_member(self, me: int) -> int:
        """The other participant of a direct room; 403 when `me` is not one."""
        if self.is_channel or me not in self.members:
            raise forbidden("You are not a participant of this room.")
        low, high = self.members
        return high if me == low else low


def forbidden(message: str) -> APIError:
    return APIError(403, "forbidden", message)


def room_not_found() -> APIError:
    return APIError(404, "room_not_found", "No such room.")


def user_not_found() -> APIError:
    return APIError(404, "user_not_found", "No such user.")


def room_for(a: int, b: int) -> str:
    """The name of the direct room of two users: what a client opens at /ws/rooms/<name>."""
    return Room.direct(a, b).name


def parse_room(name: str) -> Room:
    """The room a name names; 404 for anything that is no room's name."""
    match = _CHANNEL_NAME.fullmatch(name)
    if match is not None and int(match[1]) <= MAX_ID:
        return Room.of_channel(int(match[1]))
    match = _DIRECT_NAME.fullmatch(name)
    if match is None or int(match[1]) > int(match[2]) or int(match[2]) > MAX_ID:
        raise APIError(
            404, "room_not_found", "No such room: rooms are named dm-{lower id}-{higher id} or ch-{channel id}."
        )
    return Room.direct(int(match[1]), int(match[2]))


async def require_user(user_id: int) -> None:
    """404 unless the user exists. Ids seen to exist are remembered: the API never deletes a user (and where one
    is deleted by hand, the foreign keys still refuse to store a message for it)."""
    known = state().known_users
    if user_id in known:
        return
    if not await User.exists(id=user_id):
        raise user_not_found()
    known.add(user_id)


@dataclass(frozen=True, slots=True)
class Admission:
    """A user let into a room: the room, and for a channel the user's role and whether it is archived."""

    room: Room
    role: str | None = None
    archived: bool = False


async def admission(user_id: int, name: str) -> Admission:
    """Whether `user_id` may enter the room named `name`, in one query: 404 room_not_found for no such room (or
    user_not_found for a direct room with a user who does not exist), 403 forbidden for one they are not in."""
    room = parse_room(name)
    if not room.is_channel:
        await require_user(room.other_member(user_id))
        return Admission(room)
    sql = (
        "SELECT c.archived AS archived, m.role AS role FROM channels c"  # noqa: S608 - markers only
        f" LEFT JOIN memberships m ON m.channel_id = c.id AND m.user_id = {param(1)} WHERE c.id = {param(2)}"
    )
    rows = await get_connection("default").execute_query_dict(sql, [user_id, room.channel_id])
    if not rows:
        raise room_not_found()
    if rows[0]["role"] is None:
        raise forbidden("You are not a member of this channel.")
    return Admission(room, rows[0]["role"], bool(rows[0]["archived"]))


async def admit(user_id: int, name: str) -> Room:
    """The room named `name` if `user_id` may enter it (read, send, listen); else the 403 / 404 of `admission`.

    The one admission rule for /ws/rooms/…, the `room` of HTTP requests and Socket.IO's `join`."""
    return (await admission(user_id, name)).room


async def rooms_of(user_id: int) -> list[Room]:
    """Every room the user is in: the direct rooms with a message from or to them, and their channels.

    Direct rooms are read through the two indexes that start with sender_id (the client_id key) and receiver_id.
    """
    me = param(1)
    sql = f"""
        SELECT DISTINCT room FROM messages WHERE sender_id = {me} AND receiver_id IS NOT NULL
        UNION SELECT DISTINCT room FROM messages WHERE receiver_id = {me}
        UNION SELECT '{CHANNEL_PREFIX}' || channel_id FROM memberships WHERE user_id = {me}
    """  # noqa: S608 - only parameter markers are interpolated
    _, rows = await get_connection("default").execute_query(sql, [user_id])
    return [parse_room(row[0]) for row in rows]


def direct_room_name_sql(a: str, b: str) -> str:
    """SQL naming the direct room of two user-id expressions as Room.name does: one query over all of a user's
    rooms (the unread counts) joins messages by it."""
    low = f"CASE WHEN {a} < {b} THEN {a} ELSE {b} END"
    high = f"CASE WHEN {a} < {b} THEN {b} ELSE {a} END"
    return f"'dm-' || {low} || '-' || {high}"


def channel_room_name_sql(channel_id: str) -> str:
    """SQL naming the room of a channel-id expression as Room.name does."""
    return f"'{CHANNEL_PREFIX}' || {channel_id}"
