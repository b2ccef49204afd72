"""Server-side sessions: the cookie carries a random token, the database its hash; each process trusts a checked
session for a few seconds (SessionCache)."""

from __future__ import annotations

import functools
import hashlib
import inspect
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import ParamSpec, TypeVar

from itsdangerous import BadSignature, SignatureExpired
from quart import Quart, current_app, request
from quart.globals import _cv_app, _cv_request, _cv_websocket
from quart_auth import Action, AuthUser, QuartAuth, Unauthorized

from ..models import Session, User, utcnow
from ..state import state

P = ParamSpec("P")
T = TypeVar("T")

SESSION_COOKIE = "chat_session"  # quart-auth's signed cookie, which carries the session token

# How long a checked session is trusted without asking the database again (see SessionCache).
SESSION_CACHE_SECONDS = 5.0
# How many verified cookies (and token hashes) each worker remembers (ChatAuth, _token_hash).
VERIFIED_COOKIES = 10_000


@functools.lru_cache(maxsize=VERIFIED_COOKIES)
def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


CHAT_AUTH = "chat_auth"  # where init_app keeps the ChatAuth in app.extensions


class ChatAuth(QuartAuth):
    """quart-auth whose signed cookie is decoded and verified once per worker, not once per request.

    A bounded LRU maps a cookie's value to the token it carries and the moment its signature expires (quart-auth's
    `duration`): a request with a cookie seen before costs one dict look-up instead of a serializer, a key
    derivation and an HMAC-SHA512. It caches only what the signature proves, which never changes for one cookie
    value and one secret key; whether the session is still valid is asked of the SessionCache and the database
    on every request as before, so a revocation takes effect exactly as it did.
    """

    def __init__(
        self,
        app: Quart | None = None,
        *,
        cookie_blueprints: tuple[str, ...] = (),
        max_cookies: int = VERIFIED_COOKIES,
        **kwargs,
    ) -> None:
        self.cookie_blueprints = cookie_blueprints
        self.max_cookies = max_cookies
        self._verified: OrderedDict[str, tuple[str, float]] = OrderedDict()  # cookie -> (token, valid until)
        super().__init__(app, **kwargs)

    def init_app(self, app: Quart) -> None:
        """quart-auth's after_request hook, which writes or deletes the cookie after login_user / logout_user, runs
        for the blueprints that sign in and out (`cookie_blueprints`) only, not after every request."""
        super().init_app(app)
        app.extensions[CHAT_AUTH] = self
        if self.cookie_blueprints:
            app.after_request_funcs[None].remove(self.after_request)
            for name in self.cookie_blueprints:
                app.after_request_funcs[name].append(self.after_request)

    def load_user(self) -> AuthUser:
        """quart-auth's, reading the request's user from its context's `g` directly rather than through Quart's
        context-local proxies (`has_request_context`, then `g` twice): it runs once or twice a request."""
        if _cv_request.get(None) is None and _cv_websocket.get(None) is None:
            return self.user_class(None)
        g = _cv_app.get().g
        user = getattr(g, self.attribute_name, None)
        if user is None:
            user = self.resolve_user()
            setattr(g, self.attribute_name, user)
        return user

    def login_user(self, user: AuthUser) -> None:
        self._cookie_route()
        super().login_user(user)

    def logout_user(self) -> None:
        self._cookie_route()
        super().logout_user()

    def _cookie_route(self) -> None:
        if self.cookie_blueprints and request.blueprint not in self.cookie_blueprints:  # its cookie would be lost
            raise RuntimeError(f"sign in and out only in the blueprints {self.cookie_blueprints}")

    def load_token(self, token: str, app: Quart | None = None) -> str | None:
        known = self._verified.get(token)
        if known is not None:
            if time.time() <= known[1]:
                self._verified.move_to_end(token)
                return known[0]
            del self._verified[token]
            return None  # signed too long ago: expired for good
        app = app or current_app
        keys = [*(app.config.get("SECRET_KEY_FALLBACKS") or ()), app.secret_key]  # the current key last
        try:
            auth_id, signed_at = self.serializer_class(keys, self.salt).loads(
                token, max_age=self.duration, return_timestamp=True
            )
        except (BadSignature, SignatureExpired):
            return None
        valid_until = math.inf if self.duration is None else signed_at.timestamp() + self.duration
        self._verified[token] = (auth_id, valid_until)
        if len(self._verified) > self.max_cookies:
            self._verified.popitem(last=False)  # the least recently used
        return auth_id


async def start_session(user: User, days: int) -> str:
    """A new server-side session; returns the random token that the signed cookie carries."""
    token = secrets.token_urlsafe(32)
    await Session.create(token_hash=_token_hash(token), user=user, expires_at=utcnow() + timedelta(days=days))
    return token


async def revoke_session(token: str) -> tuple[int, int] | None:
    """Revoke one session; returns its id and its user's (so that open sockets of that session can be closed,
    and the other workers told)."""
    token_hash = _token_hash(token)
    session = await Session.get_or_none(token_hash=token_hash, revoked_at=None)
    if session is not None:
        await Session.filter(id=session.id).update(revoked_at=utcnow())
    state().sessions.drop(token_hash)  # after the update: a look-up from before it is not cached either
    return None if session is None else (session.id, session.user_id)


async def session_active(session_id: int) -> bool:
    return await Session.exists(id=session_id, revoked_at=None, expires_at__gt=utcnow())


async def revoke_other_sessions(user_id: int, keep_session_id: int) -> list[int]:
    """Revoke every session of the user but one (a password change signs out everywhere else)."""
    return await revoke_user_sessions(user_id, keep_session_id)


async def revoke_user_sessions(user_id: int, keep_session_id: int | None = None) -> list[int]:
    """Revoke every session of the user (but `keep_session_id`); returns their ids, for their sockets to close.

    Only this process's cache forgets them here: accounts.py tells the other workers.
    """
    sessions = Session.filter(user_id=user_id, revoked_at=None)
    if keep_session_id is not None:
        sessions = sessions.exclude(id=keep_session_id)
    ids = list(await sessions.values_list("id", flat=True))
    await Session.filter(id__in=ids).update(revoked_at=utcnow())
    forget_sessions_of(user_id)
    return ids


def forget_sessions_of(user_id: int | None) -> None:
    """Drop this process's cached sessions of one user (of every user: None)."""
    state().sessions.forget(lambda entry: user_id is None or entry.signed_in.user.id == user_id)


@dataclass(frozen=True, slots=True)
class SignedIn:
    session_id: int
    user: User


@dataclass(frozen=True, slots=True)
class _CachedSession:
    signed_in: SignedIn
    good_until: float  # time.monotonic()


class SessionCache:
    """Sessions this process checked in the last few seconds: most requests then need no session query.

    The bound on revocation: a logout, a sign-in that replaces a session or a password change drops the entries
    concerned at once in the process that handles it; a session revoked by another worker process is still
    accepted here for at most `ttl` seconds. An entry never outlives its session's expiry.
    """

    def __init__(self, ttl: float = SESSION_CACHE_SECONDS, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, _CachedSession] = {}
        # bumped by every revocation: a look-up that began before one must not cache what it read
        self.generation = 0

    def get(self, token_hash: str) -> SignedIn | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        if entry.good_until <= time.monotonic():
            del self._entries[token_hash]
            return None
        return entry.signed_in

    def put(self, token_hash: str, signed_in: SignedIn, expires_in: float, generation: int) -> None:
        if self.ttl <= 0 or generation != self.generation:
            return
        if len(self._entries) >= self.max_entries:
            now = time.monotonic()
            self._entries = {key: e for key, e in self._entries.items() if e.good_until > now}
            while len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]  # the oldest
        good_until = time.monotonic() + min(self.ttl, expires_in)
        self._entries[token_hash] = _CachedSession(signed_in, good_until)

    def drop(self, token_hash: str) -> None:
        self.generation += 1
        self._entries.pop(token_hash, None)

    def forget(self, which: Callable[[_CachedSession], bool]) -> None:
        self.generation += 1
        for key in [key for key, entry in self._entries.items() if which(entry)]:
            del self._entries[key]


class SessionUser(AuthUser):
    """quart-auth's user, whose auth_id is a session token checked against the database (or, for a few seconds
    after that, against this process's SessionCache) once per request."""

    def __init__(self, auth_id: str | None, action: Action = Action.PASS) -> None:
        super().__init__(auth_id, action)
        self._resolved = False
        self._signed_in: SignedIn | None = None

    async def resolve(self, fresh: bool = False) -> SignedIn | None:
        """The session and its user; `fresh` reads them from the database whatever the cache holds."""
        if fresh or not self._resolved:
            self._resolved = True
            self._signed_in = await _lookup_session(self.auth_id, fresh) if self.auth_id else None
        return self._signed_in

    @property
    def known(self) -> SignedIn | None:
        """The session this request already resolved, without a lookup (None if it resolved none, or none yet)."""
        return self._signed_in

    @property
    async def is_authenticated(self) -> bool:
        return await self.resolve() is not None


async def _lookup_session(token: str, fresh: bool) -> SignedIn | None:
    token_hash = _token_hash(token)
    cache = state().sessions
    if not fresh and (found := cache.get(token_hash)) is not None:
        return found
    generation, now = cache.generation, utcnow()
    # a deactivated (or deleted) account's sessions are refused even if one escaped revocation (started during it)
    session = (
        await Session.filter(
            token_hash=token_hash,
            revoked_at=None,
            expires_at__gt=now,
            user__deactivated_at__isnull=True,
            user__deleted_at__isnull=True,
        )
        .select_related("user")
        .first()
    )
    if session is None:
        return None
    found = SignedIn(session.id, session.user)
    cache.put(token_hash, found, (session.expires_at - now).total_seconds(), generation)
    return found


def request_user() -> SessionUser:
    """This request's (or websocket's) quart-auth user, as quart-auth's `current_user` is, without its proxies."""
    return _cv_app.get().app.extensions[CHAT_AUTH].load_user()


async def signed_in(fresh: bool = False) -> SignedIn:
    """The caller's session and user, or 401. Pass `fresh` where a stale user would matter (a password check)."""
    found = await request_user().resolve(fresh)
    if found is None:
        raise Unauthorized()
    return found


def login_required(view: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """quart-auth's `login_required` (401 unless the request's session resolves), for chat's async views: the
    session is resolved once per request (SessionUser keeps it), without quart-auth's look-ups of the extension
    and the user through `current_app` and `current_user` (three context-local proxies and a scan of the app's
    extensions each)."""
    if not inspect.iscoroutinefunction(view):
        raise TypeError(f"{view.__qualname__} must be a coroutine function")

    @functools.wraps(view)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        if await request_user().resolve() is None:
            raise Unauthorized()
        return await view(*args, **kwargs)

    return wrapper
