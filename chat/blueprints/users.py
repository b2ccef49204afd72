"""The people list: everyone else, with presence and unread counts."""

from __future__ import annotations

from quart import Blueprint

from ..conversations import users_with_unread
from ..openapi import documented
from ..schemas import UsersOut
from ..security import login_required, signed_in

bp = Blueprint("users", __name__)


@bp.get("/get-users")
@login_required
@documented((UsersOut, 200), errors=(401, 503), session=True)
async def get_users() -> dict:
    """Every user but the caller, by username: online while they have an open websocket, and how many of
    their messages the caller has not read."""
    me = (await signed_in()).user.id
    return {"users": await users_with_unread(me)}
