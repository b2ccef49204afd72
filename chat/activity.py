"""The caller's activity stream (GET /ws/me): where each of their rooms stands (unread, unread mentions, newest
message), from a snapshot read once, then kept up to date from the events the socket hears without asking the
database again, so that a message in a channel of 500 members costs its 500 activity streams no query. Only the
caller's own read marker moving costs a query (one room, for that caller's streams alone)."""

from __future__ import annotations

from dataclasses import dataclass

from tortoise.connection import get_connection

from .db import param
from .models import User
from .rooms import rooms_of

ROOMS_PER_QUERY = 100


@dataclass(slots=True)
class RoomCount:
    unread: int = 0
    mentions: int = 0
    last_message_id: int = 0
    counted_up_to: int = 0  # messages with an id up to this are in the counts already (the query saw them)

    def frame(self, room: str, mention: bool = False) -> dict:
        return {
            "type": "activity",
            "room": room,
            "last_message_id": self.last_message_id,
            "unread": self.unread,
            "mentions": self.mentions,
            "mention": mention,
        }


async def room_counts(me: int, names: list[str]) -> dict[str, RoomCount]:
    """Unread messages (others'), unread mentions of me and the newest id of each room, by my read marker: one
    query per hundred rooms, each count an index range that starts at the marker."""
    counts: dict[str, RoomCount] = {}
    for start in range(0, len(names), ROOMS_PER_QUERY):
        chunk = names[start : start + ROOMS_PER_QUERY]
        selects = []
        for number in range(2, len(chunk) + 2):
            room = param(number)
            marker = (
                f"COALESCE((SELECT r.up_to FROM read_markers r WHERE r.user_id = {param(1)} AND r.room = {room}), 0)"  # noqa: S608
            )
            selects.append(
                f"SELECT CAST({room} AS VARCHAR(100)) AS room,"  # noqa: S608 - markers only
                f" (SELECT MAX(g.id) FROM messages g WHERE g.room = {room} AND g.event = '') AS last_message_id,"
                f" (SELECT COUNT(*) FROM messages g WHERE g.room = {room} AND g.sender_id <> {param(1)}"
                f"   AND g.id > {marker} AND g.event = '') AS unread,"
                f" (SELECT COUNT(*) FROM mentions n WHERE n.user_id = {param(1)} AND n.room = {room}"
                f"   AND n.message_id > {marker}) AS mentions"
            )
        rows = await get_connection("default").execute_query_dict(" UNION ALL ".join(selects), [me, *chunk])
        for row in rows:
            last = row["last_message_id"] or 0
            counts[row["room"]] = RoomCount(int(row["unread"]), int(row["mentions"]), last, last)
    return counts


async def snapshot(me: int) -> dict[str, RoomCount]:
    """Every room I am in, with its counts."""
    return await room_counts(me, [room.name for room in await rooms_of(me)])


async def everyone() -> list[int]:
    return await User.all().values_list("id", flat=True)


class Activity:
    """Counts of one activity stream, moved by the events it hears."""

    def __init__(self, me: int, rooms: dict[str, RoomCount]) -> None:
        self.me = me
        self.rooms = rooms

    def on_message(self, message: dict) -> dict | None:
        """The activity frame of a new message, None when the counts already had it."""
        count = self.rooms.get(message["room"])
        if count is None:
            if message["receiver_id"] is None:
                return None  # a channel this stream no longer follows (its removal crossed the message)
            count = self.rooms[message["room"]] = RoomCount()  # a direct room new to me starts empty
        if message["id"] <= count.counted_up_to:
            return None
        count.last_message_id = max(count.last_message_id, message["id"])
        mention = self.me in message["mentions"]
        if message["sender_id"] != self.me:
            count.unread += 1
            count.mentions += mention
        return count.frame(message["room"], mention)

    async def recount(self, room: str) -> dict:
        """My read marker moved in `room`: count it again."""
        count = (await room_counts(self.me, [room]))[room]
        self.rooms[room] = count
        return count.frame(room)

    def add(self, channel: dict) -> None:
        last = channel["last_message_id"]
        self.rooms[channel["room"]] = RoomCount(channel["unread"], channel["mentions"], last, last)

    def remove(self, room: str) -> None:
        self.rooms.pop(room, None)

    def snapshot_frame(self, online: set[int]) -> dict:
        rooms = [
            {"room": room, "unread": c.unread, "mentions": c.mentions, "last_message_id": c.last_message_id}
            for room, c in sorted(self.rooms.items())
        ]
        return {"type": "snapshot", "rooms": rooms, "online": sorted(online)}
