"""The people list: everyone else, with presence and unread counts."""

from __future__ import annotations

from quart import Blueprint
from quart_auth import login_required
from quart_schema import document_response, security_scheme

from ..conversations import users_with_unread
from ..errors import ErrorOut
from ..openapi import SESSION
from ..schemas import UsersOut
from ..security import signed_in

bp = Blueprint("users", __name__)


@bp.get("/get-users")
@login_required
@security_scheme(SESSION)
@document_response(UsersOut, 200)
@document_response(ErrorOut, 401)
@document_response(ErrorOut, 503)
async def get_users() -> dict:
    """Every user but the caller, by username: online while they have an open websocket, and how many of
    their messages the caller has not read."""
    me = (await signed_in()).user.id
    return {"users": await users_with_unread(me)}
