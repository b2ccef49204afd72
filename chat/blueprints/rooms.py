"""Channels over HTTP: `/rooms` (create, list, read, rename, join, leave, members, archive). Each handler parses,
calls chat/channels.py and shapes the answer."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_querystring, validate_request

from .. import channels
from ..openapi import documented
from ..rooms import user_not_found
from ..schemas import (
    MAX_ID,
    ChannelOut,
    ChannelWithMembersOut,
    CreateRoomIn,
    NoContent,
    RoomMembersIn,
    RoomsOut,
    RoomsQuery,
    UpdateRoomIn,
)
from ..security import login_required, signed_in

bp = Blueprint("rooms", __name__)


def parse_user_id(text: str) -> int:
    """A user id from the path: anything else names no user (404)."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_ID:
        raise user_not_found()
    return int(text)


async def _me() -> int:
    return (await signed_in()).user.id


@bp.post("/rooms")
@login_required
@validate_request(CreateRoomIn)
@documented((ChannelOut, 201), errors=(400, 401, 404, 409, 503), session=True)
async def create_room(data: CreateRoomIn) -> tuple[dict, int]:
    """Create a channel: the caller is its owner, member_ids its members."""
    channel = await channels.create(await _me(), data.name, data.topic, data.private, data.member_ids)
    return channel, 201


@bp.get("/rooms")
@login_required
@validate_querystring(RoomsQuery)
@documented((RoomsOut, 200), errors=(400, 401, 503), session=True)
async def list_rooms(query_args: RoomsQuery) -> dict:
    """The caller's channels (scope=joined), or every public channel that is not archived (scope=public)."""
    return {"rooms": await channels.list_channels(await _me(), query_args.scope)}


@bp.get("/rooms/<name>")
@login_required
@documented((ChannelWithMembersOut, 200), errors=(401, 404, 503), session=True)
async def get_room(name: str) -> dict:
    """A channel with its members; 404 for a private channel the caller is not in."""
    return await channels.get(await _me(), name)


@bp.patch("/rooms/<name>")
@login_required
@validate_request(UpdateRoomIn)
@documented((ChannelOut, 200), errors=(400, 401, 403, 404, 409, 503), session=True)
async def update_room(name: str, data: UpdateRoomIn) -> dict:
    """Rename a channel or set its topic (owners); its sockets get a `room` frame."""
    return await channels.update(await _me(), name, data.name, data.topic)


@bp.post("/rooms/<name>/join")
@login_required
@documented((ChannelOut, 200), errors=(401, 403, 404, 409, 503), session=True)
async def join_room(name: str) -> dict:
    """Join a public channel (joining twice is not an error)."""
    return await channels.join(await _me(), name)


@bp.post("/rooms/<name>/leave")
@login_required
@documented((NoContent, 204), errors=(401, 404, 409, 503), session=True)
async def leave_room(name: str) -> tuple[str, int]:
    """Leave a channel: the caller's sockets on it close with 4403. The last owner must hand over first."""
    await channels.leave(await _me(), name)
    return "", 204


@bp.post("/rooms/<name>/members")
@login_required
@validate_request(RoomMembersIn)
@documented((NoContent, 204), errors=(400, 401, 403, 404, 409, 503), session=True)
async def set_room_members(name: str, data: RoomMembersIn) -> tuple[str, int]:
    """Add users to a channel, or change their role (owners)."""
    await channels.set_members(await _me(), name, data.user_ids, data.role)
    return "", 204


@bp.delete("/rooms/<name>/members/<user_id>")
@login_required
@documented((NoContent, 204), errors=(401, 403, 404, 409, 503), session=True)
async def remove_room_member(name: str, user_id: str) -> tuple[str, int]:
    """Remove a member (owners): their sockets on the channel close with 4403; their messages stay."""
    await channels.remove_member(await _me(), name, parse_user_id(user_id))
    return "", 204


@bp.post("/rooms/<name>/archive")
@login_required
@documented((NoContent, 204), errors=(401, 403, 404, 503), session=True)
async def archive_room(name: str) -> tuple[str, int]:
    """Make a channel read-only; it leaves scope=public."""
    await channels.archive(await _me(), name)
    return "", 204
