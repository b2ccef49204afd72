"""Administration: the accounts with their roles and states; deactivate, reactivate, grant or take the admin role;
every channel, archive any, take any over.

Every route needs an admin's session (403 forbidden for anyone else); the steps are accounts.py's and channels.py's.
"""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_request

from .. import accounts, channels
from ..openapi import documented
from ..schemas import AccountOut, AdminAccountsOut, ChannelOut, NoContent, RoleIn, RoomsOut
from ..security import login_required, signed_in

bp = Blueprint("admin", __name__)

ACCOUNT_ERRORS = (401, 403, 404, 409, 503)


@bp.get("/admin/users")
@login_required
@documented((AdminAccountsOut, 200), errors=(401, 403, 503), session=True)
async def list_accounts() -> dict:
    """Every account (the caller's too) by username, with its role and whether it is deactivated."""
    accounts.require_admin(await signed_in(fresh=True))
    return {"users": await accounts.accounts_for_admin()}


@bp.post("/admin/users/<int:user_id>/deactivate")
@login_required
@documented((AccountOut, 200), errors=ACCOUNT_ERRORS, session=True)
async def deactivate(user_id: int) -> dict:
    """Deactivate an account: every session of it ends and every socket closes at once, on every worker, and it
    cannot sign in until reactivated. Repeating it changes nothing. 409 own_account for the caller's own."""
    return (await accounts.set_deactivated(await signed_in(fresh=True), user_id, True)).account()


@bp.post("/admin/users/<int:user_id>/reactivate")
@login_required
@documented((AccountOut, 200), errors=ACCOUNT_ERRORS, session=True)
async def reactivate(user_id: int) -> dict:
    """Let a deactivated account sign in again (its old sessions stay ended)."""
    return (await accounts.set_deactivated(await signed_in(fresh=True), user_id, False)).account()


@bp.post("/admin/users/<int:user_id>/role")
@login_required
@validate_request(RoleIn)
@documented((AccountOut, 200), errors=(400, *ACCOUNT_ERRORS), session=True)
async def set_role(user_id: int, data: RoleIn) -> dict:
    """Grant (`admin`) or take back (`member`) the admin role. 409 own_account for the caller's own."""
    return (await accounts.set_role(await signed_in(fresh=True), user_id, data.role)).account()


@bp.get("/admin/rooms")
@login_required
@documented((RoomsOut, 200), errors=(401, 403, 503), session=True)
async def list_rooms() -> dict:
    """Every channel, public or private, archived or not, by name; `role` is the caller's own."""
    return {"rooms": await channels.every_channel(await signed_in(fresh=True))}


@bp.post("/admin/rooms/<name>/archive")
@login_required
@documented((NoContent, 204), errors=(401, 403, 404, 503), session=True)
async def archive_room(name: str) -> tuple[str, int]:
    """Archive any channel (read-only from now on; its sockets get a `room` frame). Repeating it changes nothing."""
    await channels.archive_as_admin(await signed_in(fresh=True), name)
    return "", 204


@bp.post("/admin/rooms/<name>/take-over")
@login_required
@documented((ChannelOut, 200), errors=(401, 403, 404, 503), session=True)
async def take_over_room(name: str) -> dict:
    """Become an owner of any channel, private ones the caller is not in too (the other owners stay); then the
    owners' requests of /rooms manage it. Its sockets get a `member` frame."""
    return await channels.take_over(await signed_in(fresh=True), name)
