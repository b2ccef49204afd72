"""Rooms: where messages go and whom they reach. A room is a value with a kind ("direct" between two users
now; "channel" next); its name, in URLs, in the messages and read_markers tables and on the broker, is made
and read here alone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .errors import APIError
from .schemas import MAX_ID

# fullmatch: "$" would let a final "\n" in; [1-9]: no leading zero, so each room has one name
_DIRECT_NAME = re.compile(r"dm-([1-9][0-9]{0,9})-([1-9][0-9]{0,9})")


@dataclass(frozen=True, slots=True)
class Room:
    kind: Literal["direct"]
    members: tuple[int, int]  # a direct room's two users, the lower id first

    @classmethod
    def direct(cls, a: int, b: int) -> Room:
        return cls("direct", (min(a, b), max(a, b)))

    @property
    def name(self) -> str:
        low, high = self.members
        return f"dm-{low}-{high}"

    @property
    def channel(self) -> str:
        """The broker channel of its messages, typing and read markers."""
        return f"room:{self.name}"

    def other_member(self, me: int) -> int:
        """The other participant of a direct room; 403 when `me` is not one."""
        low, high = self.members
        if me not in (low, high):
            raise APIError(403, "forbidden", "You are not a participant of this room.")
        return high if me == low else low


def room_for(a: int, b: int) -> str:
    """The name of the direct room of two users: what a client opens at /ws/rooms/<name>."""
    return Room.direct(a, b).name


def parse_room(name: str) -> Room:
    """The room a name names; 404 for anything that is no room's name."""
    match = _DIRECT_NAME.fullmatch(name)
    if match is None or int(match[1]) > int(match[2]) or int(match[2]) > MAX_ID:
        raise APIError(404, "room_not_found", "No such room: rooms are named dm-{lower id}-{higher id}.")
    return Room.direct(int(match[1]), int(match[2]))


async def admit(user_id: int, name: str) -> Room:
    """The room `name` names, if `user_id` may follow it: 404 for no room (or a direct room with a user that does
    not exist), 403 for a room that is not theirs. The one admission rule of every real-time path:
    `/ws/rooms/<name>` and Socket.IO's `join` and `message` events."""
    from .conversations import require_user  # conversations builds on rooms: imported when called

    room = parse_room(name)
    await require_user(room.other_member(user_id))
    return room


def direct_room_name_sql(a: str, b: str) -> str:
    """SQL naming the direct room of two user-id expressions as Room.name does: one query over all of a user's
    rooms (the unread counts) joins messages by it."""
    low = f"CASE WHEN {a} < {b} THEN {a} ELSE {b} END"
    high = f"CASE WHEN {a} < {b} THEN {b} ELSE {a} END"
    return f"'dm-' || {low} || '-' || {high}"
