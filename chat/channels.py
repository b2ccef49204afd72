"""Channels: named rooms of many members. The one module that changes channels and memberships, and publishes
what changed: `member` and `room` frames to the channel's sockets (a removed member's sockets close with 4403),
`room_added` / `room_removed` to the activity streams of the people concerned. Administrators list every channel,
archive any and take any over (become an owner), private ones too."""

from __future__ import annotations

from tortoise.connection import get_connection
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from .accounts import require_admin
from .conversations import publish, publish_to_user, room_archived
from .db import param
from .errors import APIError
from .models import Channel, Membership, User
from .rooms import Room, channel_room_name_sql, forbidden, parse_room, room_not_found, user_not_found
from .security import SignedIn
from .state import state

OWNER, MEMBER = "owner", "member"


def room_name_taken() -> APIError:
    return APIError(409, "room_name_taken", "A channel of that name exists already.")


def last_owner() -> APIError:
    return APIError(409, "last_owner", "You are the last owner: make someone else owner, or archive the channel.")


def _channels_sql(where: str) -> str:
    """Channels as the caller (parameter 1) sees them, one row each, in one query: the counts are index ranges
    (memberships by channel; messages by (room, id) from the caller's marker; mentions by (user, room, message))."""
    me = param(1)
    room = channel_room_name_sql("c.id")
    marker = "COALESCE(r.up_to, 0)"
    return f"""
        SELECT c.id AS id, c.name AS name, c.topic AS topic, c.private AS private, c.archived AS archived,
          c.created_by_id AS created_by, m.role AS role,
          (SELECT COUNT(*) FROM memberships x WHERE x.channel_id = c.id) AS member_count,
          (SELECT MAX(g.id) FROM messages g WHERE g.room = {room} AND g.event = '') AS last_message_id,
          CASE WHEN m.role IS NULL THEN 0 ELSE
            (SELECT COUNT(*) FROM messages g
              WHERE g.room = {room} AND g.id > {marker} AND g.sender_id <> {me} AND g.event = '')
          END AS unread,
          CASE WHEN m.role IS NULL THEN 0 ELSE
            (SELECT COUNT(*) FROM mentions n WHERE n.user_id = {me} AND n.room = {room} AND n.message_id > {marker})
          END AS mentions
        FROM channels c
        LEFT JOIN memberships m ON m.channel_id = c.id AND m.user_id = {me}
        LEFT JOIN read_markers r ON r.user_id = {me} AND r.room = {room}
        WHERE {where} ORDER BY c.name_key, c.id
    """  # noqa: S608 - only parameter markers are interpolated


def _channel_json(row: dict) -> dict:
    return {
        "room": Room.of_channel(row["id"]).name,
        "id": row["id"],
        "name": row["name"],
        "topic": row["topic"],
        "private": bool(row["private"]),
        "archived": bool(row["archived"]),
        "created_by": row["created_by"],
        "member_count": int(row["member_count"]),
        "role": row["role"],
        "unread": int(row["unread"]),
        "mentions": int(row["mentions"]),
        "last_message_id": row["last_message_id"] or 0,
    }


def shared_view(channel: dict) -> dict:
    """What every member may see of a channel (a `room` frame): without the caller's role and counts."""
    return {key: value for key, value in channel.items() if key not in ("role", "unread", "mentions")}


async def list_channels(me: int, scope: str) -> list[dict]:
    """The caller's channels (scope "joined") or every public channel that is not archived ("public"), by name."""
    where = "m.role IS NOT NULL" if scope == "joined" else "NOT c.private AND NOT c.archived"
    rows = await get_connection("default").execute_query_dict(_channels_sql(where), [me])
    return [_channel_json(row) for row in rows]


async def every_channel(admin: SignedIn) -> list[dict]:
    """Every channel, public or private, archived or not, by name (administrators only); `role` is the admin's."""
    require_admin(admin)
    rows = await get_connection("default").execute_query_dict(_channels_sql("1 = 1"), [admin.user.id])
    return [_channel_json(row) for row in rows]


async def channel_view(me: int, channel_id: int) -> dict | None:
    rows = await get_connection("default").execute_query_dict(_channels_sql(f"c.id = {param(2)}"), [me, channel_id])
    return _channel_json(rows[0]) if rows else None


async def _visible(me: int, name: str) -> dict:
    """The channel named `name` as the caller sees it; 404 when there is none, or it is private and the caller
    is not in it (its existence is not told)."""
    room = parse_room(name)
    if not room.is_channel:
        raise room_not_found()
    channel = await channel_view(me, room.channel_id)
    if channel is None or (channel["private"] and channel["role"] is None):
        raise room_not_found()
    return channel


async def _owned(me: int, name: str) -> dict:
    channel = await _visible(me, name)
    if channel["role"] != OWNER:
        raise forbidden("Only an owner of the channel may do this.")
    return channel


async def _require_users(user_ids: list[int]) -> None:
    found = set(await User.filter(id__in=user_ids).values_list("id", flat=True)) if user_ids else set()
    if set(user_ids) - found:
        raise user_not_found()


async def create(me: int, name: str, topic: str, private: bool, member_ids: list[int]) -> dict:
    """A new channel: the caller its owner, the listed users its members."""
    others = sorted(set(member_ids) - {me})
    await _require_users(others)
    try:
        async with in_transaction():
            channel = await Channel.create(
                name=name, name_key=name.lower(), topic=topic, private=private, created_by_id=me
            )
            await Membership.bulk_create(
                [Membership(channel_id=channel.id, user_id=me, role=OWNER)]
                + [Membership(channel_id=channel.id, user_id=user_id, role=MEMBER) for user_id in others]
            )
    except IntegrityError:
        raise room_name_taken() from None
    for user_id in [me, *others]:  # the creator's other devices learn of it too
        await _announce_added(user_id, channel.id)
    return await channel_view(me, channel.id)


async def get(me: int, name: str) -> dict:
    """The channel with its members (id, username, role, online)."""
    channel = await _visible(me, name)
    rows = (
        await Membership.filter(channel_id=channel["id"])
        .order_by("user__username_key")
        .values("user_id", "user__username", "role")
    )
    online = await state().presence.online([row["user_id"] for row in rows])
    members = [
        {
            "id": row["user_id"],
            "username": row["user__username"],
            "role": row["role"],
            "online": row["user_id"] in online,
        }
        for row in rows
    ]
    return {**channel, "members": members}


async def update(me: int, name: str, new_name: str | None, topic: str | None) -> dict:
    channel = await _owned(me, name)
    changes: dict = {}
    if new_name is not None:
        changes.update(name=new_name, name_key=new_name.lower())
    if topic is not None:
        changes["topic"] = topic
    if changes:
        try:
            await Channel.filter(id=channel["id"]).update(**changes)
        except IntegrityError:
            raise room_name_taken() from None
        channel = await channel_view(me, channel["id"])
        await publish(Room.of_channel(channel["id"]), {"type": "room", "room": shared_view(channel)})
    return channel


async def join(me: int, name: str) -> dict:
    """Join a public channel (again: no error)."""
    channel = await _any(me, name)
    if channel["role"] is not None:
        return channel
    if channel["private"]:
        raise forbidden("This channel is private: an owner must add you.")
    if channel["archived"]:
        raise room_archived()
    await _add(channel["id"], [me], MEMBER)
    return await channel_view(me, channel["id"])


async def leave(me: int, name: str) -> None:
    channel = await _visible(me, name)
    if channel["role"] is None:
        raise room_not_found()
    await _remove(channel, me)


async def set_members(me: int, name: str, user_ids: list[int], role: str) -> None:
    """Add users to the channel with `role`, or give members that role (owners only)."""
    channel = await _owned(me, name)
    await _require_users(user_ids)
    current = dict(await Membership.filter(channel_id=channel["id"]).values_list("user_id", "role"))
    if role == MEMBER and current.get(me) == OWNER and me in user_ids:
        await _check_not_last_owner(channel["id"], me)
    await _add(channel["id"], [user_id for user_id in user_ids if user_id not in current], role)
    changed = [user_id for user_id in user_ids if user_id in current and current[user_id] != role]
    await _change_roles(channel["id"], changed, role)


async def _change_roles(channel_id: int, user_ids: list[int], role: str) -> None:
    if not user_ids:
        return
    await Membership.filter(channel_id=channel_id, user_id__in=user_ids).update(role=role)
    for user_id in user_ids:
        await publish(Room.of_channel(channel_id), {"type": "member", "user_id": user_id, "joined": True, "role": role})


async def remove_member(me: int, name: str, user_id: int) -> None:
    channel = await _visible(me, name)
    if user_id != me and channel["role"] != OWNER:
        raise forbidden("Only an owner of the channel may remove members.")
    if not await Membership.exists(channel_id=channel["id"], user_id=user_id):
        raise user_not_found()
    await _remove(channel, user_id)


async def archive(me: int, name: str) -> None:
    await _archive(await _owned(me, name))


async def archive_as_admin(admin: SignedIn, name: str) -> None:
    """An administrator archives any channel, private ones they are not in too."""
    require_admin(admin)
    await _archive(await _any(admin.user.id, name))


async def take_over(admin: SignedIn, name: str) -> dict:
    """An administrator becomes an owner of any channel (added to it if not a member; the other owners stay),
    so that they can manage it with the owners' requests. The channel's sockets get a `member` frame, the admin's
    activity streams a `room_added` when they were not in it."""
    require_admin(admin)
    me = admin.user.id
    channel = await _any(me, name)
    if channel["role"] is None:
        await _add(channel["id"], [me], OWNER)
    elif channel["role"] != OWNER:
        await _change_roles(channel["id"], [me], OWNER)
    return await channel_view(me, channel["id"])


async def _any(me: int, name: str) -> dict:
    """The channel named `name`, private or not (who may see it is the caller's check); 404 when there is none."""
    room = parse_room(name)
    channel = await channel_view(me, room.channel_id) if room.is_channel else None
    if channel is None:
        raise room_not_found()
    return channel


async def _archive(channel: dict) -> None:
    if channel["archived"]:
        return
    await Channel.filter(id=channel["id"]).update(archived=True)
    await publish(Room.of_channel(channel["id"]), {"type": "room", "room": {**shared_view(channel), "archived": True}})


async def _add(channel_id: int, user_ids: list[int], role: str) -> None:
    for user_id in user_ids:
        try:
            await Membership.create(channel_id=channel_id, user_id=user_id, role=role)
        except IntegrityError:  # joined concurrently
            continue
        await publish(Room.of_channel(channel_id), {"type": "member", "user_id": user_id, "joined": True, "role": role})
        await _announce_added(user_id, channel_id)


async def _announce_added(user_id: int, channel_id: int) -> None:
    await publish_to_user(user_id, {"type": "room_added", "room": await channel_view(user_id, channel_id)})


async def _check_not_last_owner(channel_id: int, user_id: int) -> None:
    owners = await Membership.filter(channel_id=channel_id, role=OWNER).values_list("user_id", flat=True)
    if owners == [user_id]:
        raise last_owner()


async def _remove(channel: dict, user_id: int) -> None:
    """Take a user out of a channel: their sockets on it close with 4403 (the `member` frame, on every worker),
    their activity streams drop it. Their messages stay."""
    if not channel["archived"]:
        await _check_not_last_owner(channel["id"], user_id)
    if not await Membership.filter(channel_id=channel["id"], user_id=user_id).delete():
        return  # removed concurrently: announced by whoever did it
    room = Room.of_channel(channel["id"])
    await publish(room, {"type": "member", "user_id": user_id, "joined": False, "role": None})
    await publish_to_user(user_id, {"type": "room_removed", "room": room.name})
