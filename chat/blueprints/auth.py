"""Accounts and sessions: register, login, logout, me."""

from __future__ import annotations

from quart import Blueprint, Response, redirect, request
from quart_auth import current_user, login_required, login_user, logout_user
from quart_schema import document_response, security_scheme, validate_request
from tortoise.exceptions import IntegrityError

from ..attempts import remember_device, start_password_check, start_sign_in, start_sign_up
from ..broker import Event
from ..errors import APIError, ErrorOut, ValidationErrorOut
from ..models import User
from ..openapi import SESSION
from ..schemas import ChangePasswordIn, LoginIn, NoContent, RegisterIn, UserOut
from ..security import (
    SessionUser,
    cross_site_navigation,
    revoke_other_sessions,
    revoke_session,
    signed_in,
    start_session,
)
from ..state import state

bp = Blueprint("auth", __name__)


async def _conflict(username_key: str, email: str) -> APIError | None:
    if await User.exists(username_key=username_key):
        return APIError(409, "username_taken", "This username is taken.")
    if await User.exists(email=email):
        return APIError(409, "email_taken", "This email is already registered.")
    return None


@bp.post("/register")
@validate_request(RegisterIn)
@document_response(UserOut, 201)
@document_response(ValidationErrorOut, 400)
@document_response(ErrorOut, 409)
@document_response(ErrorOut, 429)
@document_response(ErrorOut, 503)
async def register(data: RegisterIn) -> tuple[dict, int]:
    """Create an account. No session is started: sign in next. Sign-ups are limited per client address."""
    attempt = await start_sign_up()
    username_key = data.username.lower()
    if conflict := await _conflict(username_key, data.email):
        raise conflict
    password_hash = await attempt.hashing(state().hash_gate.hash(data.password))
    try:
        user = await User.create(
            username=data.username, username_key=username_key, email=data.email, password_hash=password_hash
        )
    except IntegrityError:  # a concurrent registration won the race
        raise await _conflict(username_key, data.email) or APIError(
            409, "username_taken", "This username is taken."
        ) from None
    await attempt.succeeded()
    return user.public(), 201


async def _end_session(token: str) -> None:
    """Revoke the session on the server; its open websockets close (see blueprints/realtime.py)."""
    if session_id := await revoke_session(token):
        await _close_sockets_of(session_id)


async def _close_sockets_of(session_id: int) -> None:
    await state().broker.publish(Event.build(f"session:{session_id}", {"type": "revoked"}))


async def _named_account(data: LoginIn) -> tuple[str, User | None]:
    """The name as typed (normalized, with its kind) and the account it names, if any."""
    if data.email is not None:
        email = data.email.lower()
        return f"email:{email}", await User.get_or_none(email=email)
    username_key = data.username.lower()
    return f"name:{username_key}", await User.get_or_none(username_key=username_key)


@bp.post("/login")
@validate_request(LoginIn)
@document_response(UserOut, 200)
@document_response(ValidationErrorOut, 400)
@document_response(ErrorOut, 401)
@document_response(ErrorOut, 429)
@document_response(ErrorOut, 503)
async def login(data: LoginIn) -> dict:
    """Sign in with an email or a username; the answer sets the session cookie (and a device cookie)."""
    identifier, user = await _named_account(data)
    attempt = await start_sign_in(identifier, user)  # the guess's place is reserved before bcrypt runs
    # an unknown user costs one bcrypt check too: same body, same timing
    valid = await attempt.hashing(state().hash_gate.check(data.password, user.password_hash if user else None))
    if user is None or not valid:
        raise APIError(401, "invalid_credentials", "Wrong email, username or password.")

    await attempt.succeeded()
    remember_device(user)
    if current_user.auth_id:  # signing in again replaces the session this client had
        await _end_session(current_user.auth_id)
    token = await start_session(user, state().settings.session_days)
    login_user(SessionUser(token))
    return user.public()


@bp.route("/logout", methods=["GET", "POST"])
@document_response(NoContent, 204)
@document_response(NoContent, 303)
@document_response(ErrorOut, 503)
async def logout() -> Response | tuple[str, int]:
    """Revoke this session on the server (not only the cookie). A browser is sent to the login page.

    A GET that another site sent (a link, an image) signs nobody out: it is sent to a page whose button does.
    """
    if request.method == "GET" and cross_site_navigation(state().settings.allowed_origins):
        return redirect("/logout-page", 303)
    if current_user.auth_id:
        await _end_session(current_user.auth_id)
    logout_user()
    if request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html":
        return redirect("/login-page")
    return "", 204


@bp.get("/me")
@login_required
@security_scheme(SESSION)
@document_response(UserOut, 200)
@document_response(ErrorOut, 401)
@document_response(ErrorOut, 503)
async def me() -> dict:
    return (await signed_in()).user.public()


@bp.post("/change-password")
@login_required
@validate_request(ChangePasswordIn)
@security_scheme(SESSION)
@document_response(NoContent, 204)
@document_response(ValidationErrorOut, 400)
@document_response(ErrorOut, 401)
@document_response(ErrorOut, 429)
@document_response(ErrorOut, 503)
async def change_password(data: ChangePasswordIn) -> tuple[str, int]:
    """Change the caller's password (the current one is required); every other session is signed out."""
    me = await signed_in(fresh=True)  # the password hash as stored now, not as a cached session saw it
    app_state = state()
    attempt = await start_password_check(me.user.id)
    if not await attempt.hashing(app_state.hash_gate.check(data.current_password, me.user.password_hash)):
        raise APIError(401, "invalid_credentials", "The current password is wrong.")
    await attempt.succeeded()
    password_hash = await app_state.hash_gate.hash(data.new_password)
    await User.filter(id=me.user.id).update(password_hash=password_hash)
    for session_id in await revoke_other_sessions(me.user.id, me.session_id):
        await _close_sockets_of(session_id)
    return "", 204
