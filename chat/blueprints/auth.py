"""Accounts and sessions: register, login, logout, me."""

from __future__ import annotations

from quart import Blueprint, Response, redirect, request
from quart_auth import login_user, logout_user
from quart_schema import validate_request

from .. import accounts
from ..openapi import documented
from ..schemas import AccountOut, ChangePasswordIn, DeleteAccountIn, LoginIn, NoContent, RegisterIn, UserOut
from ..security import SessionUser, cross_site_navigation, login_required, request_user, signed_in
from ..state import state

bp = Blueprint("auth", __name__)


@bp.post("/register")
@validate_request(RegisterIn)
@documented((UserOut, 201), errors=(400, 409, 429, 503))
async def register(data: RegisterIn) -> tuple[dict, int]:
    """Create an account. No session is started: sign in next. Sign-ups are limited per client address."""
    user = await accounts.sign_up(data.username, data.email, data.password)
    return user.public(), 201


@bp.post("/login")
@validate_request(LoginIn)
@documented((UserOut, 200), errors=(400, 401, 403, 429, 503))
async def login(data: LoginIn) -> dict:
    """Sign in with an email or a username; the answer sets the session cookie (and a device cookie).

    403 account_deactivated: the password is right, but an administrator deactivated the account."""
    # signing in again replaces the session this client had
    signed = await accounts.sign_in(data.email, data.username, data.password, replacing=request_user().auth_id)
    login_user(SessionUser(signed.token))
    return signed.user.public()


@bp.route("/logout", methods=["GET", "POST"])
@documented((NoContent, 204), (NoContent, 303), errors=(503,))
async def logout() -> Response | tuple[str, int]:
    """Revoke this session on the server (not only the cookie). A browser is sent to the login page.

    A GET that another site sent (a link, an image) signs nobody out: it is sent to a page whose button does.
    """
    if request.method == "GET" and cross_site_navigation(state().settings.allowed_origins):
        return redirect("/logout-page", 303)
    token = request_user().auth_id
    if token:
        await accounts.end_session(token)
    logout_user()
    if request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html":
        return redirect("/login-page")
    return "", 204


@bp.get("/me")
@login_required
@documented((AccountOut, 200), errors=(401, 503), session=True)
async def me() -> dict:
    """The caller's account, with its role (admin or member)."""
    return (await signed_in()).user.account()


@bp.post("/delete-account")
@login_required
@validate_request(DeleteAccountIn)
@documented((NoContent, 204), errors=(400, 401, 429, 503), session=True)
async def delete_account(data: DeleteAccountIn) -> tuple[str, int]:
    """Delete the caller's account (the password is required): the sign-in name and email are freed, every
    session ends, and the messages stay in the others' history as from "deleted user" (their content removed,
    unless the operator keeps it: CHAT_DELETED_USER_CONTENT)."""
    me = await signed_in(fresh=True)
    await accounts.delete_own_account(me, data.password)
    logout_user()
    return "", 204


@bp.post("/change-password")
@login_required
@validate_request(ChangePasswordIn)
@documented((NoContent, 204), errors=(400, 401, 429, 503), session=True)
async def change_password(data: ChangePasswordIn) -> tuple[str, int]:
    """Change the caller's password (the current one is required); every other session is signed out."""
    me = await signed_in(fresh=True)  # the password hash as stored now, not as a cached session saw it
    await accounts.change_password(me, data.current_password, data.new_password)
    return "", 204
