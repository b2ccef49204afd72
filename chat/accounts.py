"""Accounts and their sessions: sign-up, sign-in, sign-out, password change, and the account's life cycle: the
admin role, deactivation and reactivation.

The blueprints (auth.py, admin.py) and the `chat` command call these steps; they alone create accounts, start
and revoke sessions and tell open sockets (and every worker's session cache) that sessions ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from .attempts import remember_device, start_password_check, start_sign_in, start_sign_up
from .broker import BrokerUnavailable, Event
from .errors import APIError
from .files import delete_bytes, forget_uploads
from .models import ADMIN, DELETED_USERNAME, MESSAGE, Message, ReadMarker, User, utcnow
from .schemas import MAX_ID
from .security import (
    SignedIn,
    forget_sessions_of,
    revoke_other_sessions,
    revoke_session,
    revoke_user_sessions,
    start_session,
)
from .state import AppState, state

log = logging.getLogger(__name__)

# The event a revoked session's sockets hear on their session's channel: they close (blueprints/realtime.py).
SESSION_REVOKED = "revoked"
# Every worker listens here (follow_account_changes): an account's sessions were revoked or its role changed,
# forget its cached sessions at once rather than trust them for SessionCache's few seconds.
ACCOUNTS_CHANNEL = "accounts"
ACCOUNT_CHANGED = "account_changed"
NO_PASSWORD = "!"  # noqa: S105 - a deleted account's hash: not bcrypt's form, so no password ever matches it


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


async def create_account(username: str, email: str, password_hash: str, is_admin: bool = False) -> User:
    """Store a new account; 409 when its name (in any case) or email is taken."""
    username_key = username.lower()
    try:
        return await User.create(
            username=username, username_key=username_key, email=email, password_hash=password_hash, is_admin=is_admin
        )
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
        return f"email:{email}", await User.get_or_none(email=email, deleted_at=None)
    username_key = (username or "").lower()
    return f"name:{username_key}", await User.get_or_none(username_key=username_key, deleted_at=None)


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
    if user.deactivated_at is not None:  # said only to whoever knows the password
        raise account_deactivated()
    remember_device(user)
    if replacing:
        await end_session(replacing)
    return SignIn(user, await start_session(user, state().settings.session_days))


async def end_session(token: str) -> None:
    """Revoke the session on the server; its open websockets close, and every worker stops accepting it at once."""
    if revoked := await revoke_session(token):
        session_id, user_id = revoked
        await _close_sockets_of(session_id)
        await _announce_account_changed(user_id)


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
    await _announce_account_changed(me.user.id)


async def reset_password(user: User, new_password: str) -> None:
    """The operator sets a password (`chat set-password`): every session of the account ends."""
    password_hash = await state().hash_gate.hash(new_password)
    await User.filter(id=user.id).update(password_hash=password_hash)
    await end_every_session(user.id)


def account_deactivated() -> APIError:
    return APIError(403, "account_deactivated", "This account has been deactivated by an administrator.")


async def end_every_session(user_id: int) -> None:
    """Revoke all the account's sessions: its sockets close and every worker stops accepting them at once."""
    for session_id in await revoke_user_sessions(user_id):
        await _close_sockets_of(session_id)
    await _announce_account_changed(user_id)


async def _announce_account_changed(user_id: int) -> None:
    with contextlib.suppress(BrokerUnavailable):  # the other workers' caches then expire within seconds
        await state().broker.publish(Event.build(ACCOUNTS_CHANNEL, {"type": ACCOUNT_CHANGED, "user_id": user_id}))


async def follow_account_changes(app_state: AppState) -> None:
    """For the life of a worker: forget the cached sessions of any account another worker changed.

    Should events be lost (the broker's outage, an overflow), every cached session is forgotten: a few more
    queries, never a revoked session accepted.
    """
    while True:
        try:
            subscription = await app_state.broker.subscribe((ACCOUNTS_CHANNEL,), 1024)
        except BrokerUnavailable:
            _forget_every_account(app_state)
            await asyncio.sleep(1)
            continue
        try:
            await _forget_ended_sessions(subscription)
        finally:
            await app_state.broker.unsubscribe(subscription)
        _forget_every_account(app_state)  # overflowed


def _forget_account(user_id: int) -> None:
    """What this worker remembers of an account: its cached sessions, that it exists (it may be deleted), and
    the history pages (a deleted account's messages may have lost their content)."""
    forget_sessions_of(user_id)
    state().known_users.discard(user_id)
    state().pages.forget()


def _forget_every_account(app_state: AppState) -> None:
    """Whatever was missed of the accounts channel: nothing cached is trusted."""
    forget_sessions_of(None)
    app_state.pages.forget()


async def _forget_ended_sessions(subscription) -> None:
    overflowed = asyncio.ensure_future(subscription.overflowed.wait())
    try:
        while True:
            event = asyncio.ensure_future(subscription.queue.get())
            await asyncio.wait((event, overflowed), return_when=asyncio.FIRST_COMPLETED)
            if not event.done():
                event.cancel()
                return
            if event.result().type == ACCOUNT_CHANGED:
                _forget_account(event.result().user_id)
    finally:
        overflowed.cancel()


# ---------------------------------------------------------------- the admin role, deactivation


def require_admin(me: SignedIn) -> None:
    if not me.user.is_admin:
        raise APIError(403, "forbidden", "Only an administrator may do this.")


async def _managed_account(me: SignedIn, user_id: int) -> User:
    """The account an admin acts on: 404 if there is none, 409 if it is the admin's own."""
    require_admin(me)
    user = await User.get_or_none(id=user_id, deleted_at=None) if user_id <= MAX_ID else None
    if user is None:
        raise APIError(404, "user_not_found", "No such user.")
    if user.id == me.user.id:
        raise APIError(409, "own_account", "Administrators cannot deactivate or demote themselves.")
    return user


async def set_deactivated(me: SignedIn, user_id: int, deactivated: bool) -> User:
    """An admin deactivates or reactivates an account."""
    user = await _managed_account(me, user_id)
    return await (deactivate_account(user) if deactivated else reactivate_account(user))


async def deactivate_account(user: User) -> User:
    """Every session ends, every socket closes (on every worker), and no sign-in succeeds until reactivated."""
    if user.deactivated_at is None:
        user.deactivated_at = utcnow()
        await User.filter(id=user.id).update(deactivated_at=user.deactivated_at)
    await end_every_session(user.id)  # again too: a session started while the first call ran ends as well
    return user


async def reactivate_account(user: User) -> User:
    if user.deactivated_at is not None:
        user.deactivated_at = None
        await User.filter(id=user.id).update(deactivated_at=None)
    return user


async def set_role(me: SignedIn, user_id: int, role: str) -> User:
    """Grant or take back the admin role."""
    user = await _managed_account(me, user_id)
    user.is_admin = role == ADMIN
    await User.filter(id=user.id).update(is_admin=user.is_admin)
    forget_sessions_of(user.id)  # cached sessions carry the user as it was: no worker may act on the old role
    await _announce_account_changed(user.id)
    return user


async def accounts_for_admin() -> list[dict]:
    """Every account with its role and state, by username."""
    users = await User.all().order_by("username_key", "id")
    return [
        {**user.account(), "created_at": user.created_at.isoformat(), "deleted": user.deleted_at is not None}
        for user in users
    ]


# ---------------------------------------------------------------- deletion


async def delete_own_account(me: SignedIn, password: str) -> None:
    """The owner deletes their account, with its password re-entered (401 if wrong)."""
    attempt = await start_password_check(me.user.id)
    if not await attempt.hashing(state().hash_gate.check(password, me.user.password_hash)):
        raise APIError(401, "invalid_credentials", "The password is wrong.")
    await attempt.succeeded()
    await delete_account(me.user)


async def delete_account(user: User) -> None:
    """Free the sign-in name and email, end every session, and keep the messages for the others as from
    "deleted user": their content removed or kept, as CHAT_DELETED_USER_CONTENT says.

    The row stays (the messages' sender), with a name and an email no one can type or register (they hold a
    space), a password hash that matches nothing, and deleted_at set, which sign-in and sending look at.
    """
    if user.deleted_at is not None:
        return
    async with in_transaction() as connection:
        await User.filter(id=user.id).update(
            username=DELETED_USERNAME,
            username_key=f"{DELETED_USERNAME} {user.id}",
            email=f"{DELETED_USERNAME} {user.id}",
            password_hash=NO_PASSWORD,
            is_admin=False,
            deleted_at=utcnow(),
        )
        remove = state().settings.deleted_user_content == "remove"
        if remove:
            await Message.filter(sender_id=user.id, event=MESSAGE).update(content="")
        await ReadMarker.filter(user_id=user.id).delete()
        stored_files = await forget_uploads(connection, user.id, sent_too=remove)
    await delete_bytes(stored_files)  # after the commit: no row names them any more
    _forget_account(user.id)
    await end_every_session(user.id)
