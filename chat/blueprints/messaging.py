"""Messages over HTTP (direct rooms and channels): send, page through history, mark as read."""

from __future__ import annotations

from quart import Blueprint, Response, current_app
from quart_schema import validate_querystring, validate_request

from .. import conversations
from ..openapi import documented
from ..rooms import Room, admit
from ..schemas import MarkReadIn, MessageOut, MessagesOut, MessagesQuery, NoContent, SendMessageIn
from ..security import login_required, signed_in

bp = Blueprint("messaging", __name__)


@bp.post("/send-message")
@login_required
@validate_request(SendMessageIn)
@documented((MessageOut, 201), (MessageOut, 200), errors=(400, 401, 403, 404, 409, 429, 503), session=True)
async def send_message(data: SendMessageIn) -> tuple[dict, int]:
    """Store a message, then deliver it to the room's websockets. A repeated client_id stores nothing
    new and answers 200 with the message stored the first time."""
    me = (await signed_in()).user.id
    if data.room is not None:
        message, created = await conversations.send_to_room(
            me, data.room, data.content, data.client_id, data.reply_to, data.file_ids
        )
    else:
        message, created = await conversations.send_message(
            me, data.receiver_id, data.content, data.client_id, data.reply_to, data.file_ids
        )
    return message, 201 if created else 200


@bp.get("/get-messages")
@login_required
@validate_querystring(MessagesQuery)
@documented((MessagesOut, 200), errors=(400, 401, 403, 404, 503), session=True)
async def get_messages(query_args: MessagesQuery) -> Response:
    """A page of the conversation with user_id, oldest first: the newest `limit` messages, or the ones
    just before / after a message id."""
    me = (await signed_in()).user.id
    room = await _room(me, query_args.user_id, query_args.room)
    body = await conversations.room_history_json(
        room, before=query_args.before, after=query_args.after, limit=query_args.limit
    )
    return current_app.response_class(body, mimetype="application/json")


@bp.post("/mark-read")
@login_required
@validate_request(MarkReadIn)
@documented((NoContent, 204), errors=(400, 401, 403, 404, 503), session=True)
async def mark_read(data: MarkReadIn) -> tuple[str, int]:
    """Move the caller's read marker in the room with user_id forward to up_to (never backwards)."""
    me = (await signed_in()).user.id
    await conversations.mark_room_read(me, await _room(me, data.user_id, data.room), data.up_to)
    return "", 204


async def _room(me: int, user_id: int | None, name: str | None) -> Room:
    """The room of a request: the direct room with user_id, or the one named (admitted as rooms.admit says)."""
    if name is not None:
        return await admit(me, name)
    await conversations.require_user(user_id, deleted_too=True)  # a deleted account's history stays readable
    return Room.direct(me, user_id)
