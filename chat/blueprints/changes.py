"""Changing messages over HTTP: edit, delete, reactions (chat/changes.py). Sending a reply is /send-message's."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_request

from .. import changes
from ..openapi import documented
from ..schemas import MAX_ID, EditMessageIn, MessageOut, NoContent
from ..security import login_required, signed_in

bp = Blueprint("changes", __name__)


def _message_id(message_id: int) -> int:
    # ids are 32-bit in both databases: a larger one names no message (and would overflow PostgreSQL's parameter)
    if message_id > MAX_ID:
        raise changes.message_not_found()
    return message_id


@bp.patch("/messages/<int:message_id>")
@login_required
@validate_request(EditMessageIn)
@documented((MessageOut, 200), errors=(400, 401, 403, 404, 409, 429, 503), session=True)
async def edit_message(message_id: int, data: EditMessageIn) -> dict:
    """The sender replaces a message's content: the message as it is now, with edited_at set. An `edit` event
    goes to the room."""
    me = (await signed_in()).user.id
    return await changes.edit(me, _message_id(message_id), data.content)


@bp.delete("/messages/<int:message_id>")
@login_required
@documented((NoContent, 204), errors=(401, 403, 404, 409, 429, 503), session=True)
async def delete_message(message_id: int) -> tuple[str, int]:
    """The sender or an owner of the channel deletes a message: it stays in history as a tombstone (deleted,
    empty content). A `delete` event goes to the room; deleting it again is not an error."""
    me = (await signed_in()).user.id
    await changes.delete(me, _message_id(message_id))
    return "", 204


@bp.put("/messages/<int:message_id>/reactions/<emoji>")
@login_required
@documented((NoContent, 204), errors=(400, 401, 404, 409, 429, 503), session=True)
async def add_reaction(message_id: int, emoji: str) -> tuple[str, int]:
    """React to a message with one emoji (idempotent): a `reaction` event goes to the room when it is new."""
    me = (await signed_in()).user.id
    await changes.react(me, _message_id(message_id), emoji, on=True)
    return "", 204


@bp.delete("/messages/<int:message_id>/reactions/<emoji>")
@login_required
@documented((NoContent, 204), errors=(400, 401, 404, 409, 429, 503), session=True)
async def remove_reaction(message_id: int, emoji: str) -> tuple[str, int]:
    """Take back the caller's emoji on a message (idempotent): a `reaction` event when there was one."""
    me = (await signed_in()).user.id
    await changes.react(me, _message_id(message_id), emoji, on=False)
    return "", 204
