"""Password hashing, server-side sessions, login throttling and Origin checks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import secrets
import time
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import bcrypt
from quart import request
from quart_auth import Action, AuthUser, Unauthorized, current_user
from redis.exceptions import RedisError

from .errors import APIError
from .models import Session, User, utcnow

# ---------------------------------------------------------------- passwords


def _reduce(password: str) -> bytes:
    """bcrypt reads at most 72 bytes; reduce every password first so that none is ever truncated.

    base64(SHA-384) is 64 bytes with no NUL, as OWASP's Password Storage Cheat Sheet describes.
    """
    return base64.b64encode(hashlib.sha384(password.encode("utf-8")).digest())


def hash_password_sync(password: str, rounds: int) -> str:
    return bcrypt.hashpw(_reduce(password), bcrypt.gensalt(rounds)).decode("ascii")


def check_password_sync(password: str, password_hash: str) -> bool:
    return bcrypt.checkpw(_reduce(password), password_hash.encode("ascii"))


class HashGate:
    """Runs bcrypt off the event loop, a bounded number at once, with a bounded wait.

    A hash costs ~0.25 s of a core: a flood of logins must not take every core from the event loop,
    nor pile up in a queue that answers a minute later. Past the bound the caller gets 503 at once.
    """

    def __init__(self, rounds: int, concurrency: int, queue: int) -> None:
        self.rounds = rounds
        self._slots = asyncio.Semaphore(concurrency)
        self._capacity = concurrency + queue
        self._admitted = 0
        self._dummy_hash: str | None = None

    async def _run(self, func, *args):
        if self._admitted >= self._capacity:
            raise APIError(503, "busy", "The server is busy signing people in; retry shortly.", {"Retry-After": "1"})
        self._admitted += 1
        try:
            async with self._slots:
                return await asyncio.to_thread(func, *args)
        finally:
            self._admitted -= 1

    async def hash(self, password: str) -> str:
        return await self._run(hash_password_sync, password, self.rounds)

    async def check(self, password: str, password_hash: str | None) -> bool:
        """Check a password; with no hash (unknown user) spend the same time on a dummy one."""
        if password_hash is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self.hash(secrets.token_urlsafe(16))
            await self._run(check_password_sync, password, self._dummy_hash)
            return False
        return await self._run(check_password_sync, password, password_hash)


# ---------------------------------------------------------------- sessions


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


async def start_session(user: User, days: int) -> str:
    """A new server-side session; returns the random token that the signed cookie carries."""
    token = secrets.token_urlsafe(32)
    await Session.create(token_hash=_token_hash(token), user=user, expires_at=utcnow() + timedelta(days=days))
    return token


async def revoke_session(token: str) -> int | None:
    """Revoke one session; returns its id (so that open sockets of that session can be closed)."""
    session = await Session.get_or_none(token_hash=_token_hash(token), revoked_at=None)
    if session is None:
        return None
    await Session.filter(id=session.id).update(revoked_at=utcnow())
    return session.id


async def session_active(session_id: int) -> bool:
    return await Session.exists(id=session_id, revoked_at=None, expires_at__gt=utcnow())


async def revoke_other_sessions(user_id: int, keep_session_id: int) -> list[int]:
    """Revoke every session of the user but one (a password change signs out everywhere else)."""
    ids = (
        await Session.filter(user_id=user_id, revoked_at=None).exclude(id=keep_session_id).values_list("id", flat=True)
    )
    await Session.filter(id__in=list(ids)).update(revoked_at=utcnow())
    return list(ids)


@dataclass(frozen=True, slots=True)
class SignedIn:
    session_id: int
    user: User


class SessionUser(AuthUser):
    """quart-auth's user, whose auth_id is a session token checked against the database once per request."""

    def __init__(self, auth_id: str | None, action: Action = Action.PASS) -> None:
        super().__init__(auth_id, action)
        self._resolved = False
        self._signed_in: SignedIn | None = None

    async def resolve(self) -> SignedIn | None:
        if not self._resolved:
            self._resolved = True
            if self.auth_id:
                session = (
                    await Session.filter(token_hash=_token_hash(self.auth_id), revoked_at=None, expires_at__gt=utcnow())
                    .select_related("user")
                    .first()
                )
                if session is not None:
                    self._signed_in = SignedIn(session.id, session.user)
        return self._signed_in

    @property
    async def is_authenticated(self) -> bool:
        return await self.resolve() is not None


async def signed_in() -> SignedIn:
    """The caller's session and user, or 401."""
    found = await current_user.resolve()
    if found is None:
        raise Unauthorized()
    return found


# ---------------------------------------------------------------- throttling


class MemoryThrottle:
    """Counts of events (failed logins, sent messages) in sliding windows, per key, in this process.

    RedisThrottle keeps the same windows in Redis when workers share one (CHAT_BROKER_URL=redis://).
    """

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._writes = 0

    def _recent(self, key: str, window: float, now: float) -> deque[float]:
        stamps = self._hits.get(key)
        if stamps is None:
            return deque()
        while stamps and stamps[0] <= now - window:
            stamps.popleft()
        if not stamps:
            del self._hits[key]
        return stamps

    async def retry_after(self, key: str, limit: int, window: float) -> int | None:
        """Seconds to wait if `key` has `limit` hits within `window`, else None."""
        now = time.monotonic()
        stamps = self._recent(key, window, now)
        if len(stamps) < limit:
            return None
        return max(1, int(stamps[-limit] + window - now + 0.999))

    async def hit(self, key: str, window: float) -> None:
        now = time.monotonic()
        self._hits.setdefault(key, deque()).append(now)
        self._writes += 1
        if self._writes % 1024 == 0:  # forget keys whose hits all expired, so memory stays bounded
            for stale in list(self._hits):
                self._recent(stale, window, now)

    async def reset(self, key: str) -> None:
        self._hits.pop(key, None)


class RedisThrottle:
    """The same windows in Redis sorted sets, shared by every worker and machine.

    While Redis is unreachable each worker counts on its own (MemoryThrottle): limits loosen by the number of
    workers for that time, rather than every login and send failing.
    """

    def __init__(self, client, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._fallback = MemoryThrottle()

    async def retry_after(self, key: str, limit: int, window: float) -> int | None:
        now = time.time()
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(self._prefix + key, "-inf", now - window)
                pipe.zrange(self._prefix + key, -limit, -limit, withscores=True)
                pipe.zcard(self._prefix + key)
                _, oldest, count = await pipe.execute()
        except (OSError, RedisError):
            return await self._fallback.retry_after(key, limit, window)
        if count < limit or not oldest:
            return None
        return max(1, int(oldest[0][1] + window - now + 0.999))

    async def hit(self, key: str, window: float) -> None:
        now = time.time()
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.zadd(self._prefix + key, {secrets.token_hex(8): now})
                pipe.expire(self._prefix + key, int(window) + 1)
                await pipe.execute()
        except (OSError, RedisError):
            await self._fallback.hit(key, window)

    async def reset(self, key: str) -> None:
        await self._fallback.reset(key)
        with contextlib.suppress(OSError, RedisError):
            await self._client.delete(self._prefix + key)


async def throttled(throttle: MemoryThrottle | RedisThrottle, key: str, limit: int, window: float) -> int | None:
    """Count one hit on `key` unless it is over its limit; returns the seconds to wait when it is."""
    if wait := await throttle.retry_after(key, limit, window):
        return wait
    await throttle.hit(key, window)
    return None


# ---------------------------------------------------------------- origins


def origin_allowed(origin: str | None, host: str, allowed: tuple[str, ...]) -> bool:
    """A request with no Origin (curl, a native client) passes; a browser's must be ours or allowed.

    "Ours" compares host and port only, so that the https:// origin of a server behind a TLS proxy passes.
    """
    if origin is None:
        return True
    origin = origin.strip().rstrip("/").lower()
    if origin in allowed:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc == host.lower()


# ---------------------------------------------------------------- request guards

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def foreign_origin(origin: str | None, host: str, allowed: tuple[str, ...]) -> APIError | None:
    if origin_allowed(origin, host, allowed):
        return None
    return APIError(403, "forbidden_origin", "Requests from this origin are not allowed.")


def check_request_origin(allowed: tuple[str, ...]) -> None:
    """CSRF defence for state-changing requests: a browser's Origin must be ours (cookies are SameSite=Lax
    too, and bodies must be JSON, which no cross-site form can send without a preflight)."""
    if request.method in STATE_CHANGING:
        problem = foreign_origin(request.headers.get("Origin"), request.host, allowed)
        if problem is not None:
            raise problem
