"""Accounts and their sessions: sign-up, sign-in, sign-out, password change.

The blueprint (blueprints/auth.py) and the `chat createuser` command call these steps; they alone create
accounts, start and revoke sessions and tell open sockets that their session ended.
"""

from __future__ import annotations

from dataclasses import dataclass

from tortoise.exceptions import IntegrityError

from .attempts import remember_device, start_password_check, start_sign_in, start_sign_up
from .broker import Event
from .errors import APIError
from .models import User
from .security import SignedIn, revoke_other_sessions, revoke_session, start_session
from .state import state

# The event a revoked session's sockets hear on their session's channel: they close (blueprints/realtime.py).
SESSION_REVOKED = "revoked"


def session_channel(session_id: int) -> str:
    return f"session:{session_id}"


def _username_taken() -> APIError:
    return APIError(409, "username_taken", "This username is taken.")


async def _conflict(username_key: str, email: str) -> APIError | None:
    if await User.exists(username_key=username_key):
        return _username_taken()
    if await User.exists(email=email):
        return APIError(409, "email_taken", "This email is already registered.")
    return None


async def create_account(username: str, email: str, password_hash: str) -> User:
    """Store a new account; 409 when its name (in any case) or email is taken."""
    username_key = username.lower()
    try:
        return await User.create(username=username, username_key=username_key, email=email, password_hash=password_hash)
    except IntegrityError:  # taken, perhaps by a concurrent registration that won the race
        raise await _conflict(username_key, email) or _username_taken() from None


async def sign_up(username: str, email: str, password: str) -> User:
    """A new account for a client of the web API: within its address's sign-up budget, with no session."""
    attempt = await start_sign_up()
    if conflict := await _conflict(username.lower(), email):
        raise conflict  # before bcrypt: a taken name costs no hash
    password_hash = await attempt.hashing(state().hash_gate.hash(password))
    user = await create_account(username, email, password_hash)
    await attempt.succeeded()
    return user


@dataclass(frozen=True, slots=True)
class SignIn:
    user: User
    token: str  # the new session's, for the signed cookie


async def _named_account(email: str | None, username: str | None) -> tuple[str, User | None]:
    """The name as typed (normalized, with its kind) and the account it names, if any."""
    if email is not None:
        email = email.lower()
        return f"email:{email}", await User.get_or_none(email=email)
    username_key = (username or "").lower()
    return f"name:{username_key}", await User.get_or_none(username_key=username_key)


async def sign_in(email: str | None, username: str | None, password: str, replacing: str | None) -> SignIn:
    """Check a password within the sign-in budgets, give this browser a device cookie for the account and start a
    session; 401 or 429 otherwise.

    The email is used when both are given. `replacing` is the session token the client signed in with
    before, if any: signing in again ends it.
    """
    identifier, user = await _named_account(email, username)
    attempt = await start_sign_in(identifier, user)  # the guess's place is reserved before bcrypt runs
    # an unknown user costs one bcrypt check too: same body, same timing
    valid = await attempt.hashing(state().hash_gate.check(password, user.password_hash if user else None))
    if user is None or not valid:
        raise APIError(401, "invalid_credentials", "Wrong email, username or password.")
    await attempt.succeeded()
    remember_device(user)
    if replacing:
        await end_session(replacing)
    return SignIn(user, await start_session(user, state().settings.session_days))


async def end_session(token: str) -> None:
    """Revoke the session on the server; its open websockets close."""
    if session_id := await revoke_session(token):
        await _close_sockets_of(session_id)


async def _close_sockets_of(session_id: int) -> None:
    await state().broker.publish(Event.build(session_channel(session_id), {"type": SESSION_REVOKED}))


async def change_password(me: SignedIn, current_password: str, new_password: str) -> None:
    """Replace the password once the current one is checked (401 if wrong); every other session ends.

    `me` must be read fresh: the password hash as stored now, not as a cached session saw it.
    """
    hash_gate = state().hash_gate
    attempt = await start_password_check(me.user.id)
    if not await attempt.hashing(hash_gate.check(current_password, me.user.password_hash)):
        raise APIError(401, "invalid_credentials", "The current password is wrong.")
    await attempt.succeeded()
    password_hash = await hash_gate.hash(new_password)
    await User.filter(id=me.user.id).update(password_hash=password_hash)
    for session_id in await revoke_other_sessions(me.user.id, me.session_id):
        await _close_sockets_of(session_id)
