"""Password hashing, server-side sessions, login throttling and Origin checks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import math
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import bcrypt
from quart import current_app, request
from quart_auth import Action, AuthUser, Unauthorized, current_user
from redis.exceptions import RedisError

from .errors import APIError
from .models import Session, User, utcnow

# ---------------------------------------------------------------- passwords

HASH_MAX_WAIT = 1.0  # seconds a login may wait for a hashing thread before it is answered 503


def _reduce(password: str) -> bytes:
    """bcrypt reads at most 72 bytes; reduce every password first so that none is ever truncated.

    base64(SHA-384) is 64 bytes with no NUL, as OWASP's Password Storage Cheat Sheet describes.
    """
    return base64.b64encode(hashlib.sha384(password.encode("utf-8")).digest())


def hash_password_sync(password: str, rounds: int) -> str:
    return bcrypt.hashpw(_reduce(password), bcrypt.gensalt(rounds)).decode("ascii")


def check_password_sync(password: str, password_hash: str) -> bool:
    return bcrypt.checkpw(_reduce(password), password_hash.encode("ascii"))


def _lowest_cpu_priority() -> None:
    """Run the calling thread only when its core has nothing else to do (SCHED_IDLE; else nice 19)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # 0: this thread, on Linux
    except (AttributeError, OSError):
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class _Lane:
    """One budget of the HashGate: its own threads, its own waiting places, its own measure of a hash's time."""

    def __init__(self, name: str, threads: int, queue: int, max_wait: float) -> None:
        self.threads = threads
        self.max_wait = max_wait
        self._slots = asyncio.Semaphore(threads)
        self._capacity = threads + queue
        self._admitted = 0
        self._seconds_per_hash = 0.0  # moving average of recent hashes, from the moment each got a thread
        self._executor = ThreadPoolExecutor(threads, f"bcrypt-{name}", initializer=_lowest_cpu_priority)

    def expected_wait(self) -> float:
        """Seconds a hash admitted now would wait for a thread."""
        waiting = max(0, self._admitted - self.threads + 1)
        return waiting / self.threads * self._seconds_per_hash

    async def run(self, func, *args):
        if self._admitted >= self._capacity or self.expected_wait() > self.max_wait:
            raise APIError(503, "busy", "The server is busy signing people in; retry shortly.", {"Retry-After": "1"})
        self._admitted += 1
        try:
            async with self._slots:
                started = time.monotonic()
                result = await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)
                took = time.monotonic() - started
                self._seconds_per_hash = (
                    took if not self._seconds_per_hash else 0.8 * self._seconds_per_hash + 0.2 * took
                )
                return result
        finally:
            self._admitted -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class HashGate:
    """Runs bcrypt off the event loop: a bounded number at once, at the lowest CPU priority, with a bounded wait.

    A hash costs ~0.25 s of a core. Its threads run SCHED_IDLE, so the event loop (and every socket it serves)
    takes the core back the moment it has work: a flood of logins gets what live traffic leaves, instead of
    slowing every message. A login that would wait more than `max_wait` seconds (judged by how long recent hashes
    took, which grows when the loop leaves little) or finds the queue full is answered 503 at once, rather than
    pile up in a queue that answers a minute later.

    Checks (sign-ins) and new hashes (sign-ups, new passwords) have separate lanes: a flood of sign-ups fills
    only its own, about half as large, and never a place that a sign-in could take (issue 11 saw every sign-in
    503ed during one). The sign-up lane's threads are extra ones: while both lanes are busy a sign-in shares
    the cores with at most half as many sign-up hashes, so it is slower, never refused for them.
    """

    def __init__(self, rounds: int, concurrency: int, queue: int, max_wait: float = HASH_MAX_WAIT) -> None:
        self.rounds = rounds
        self.sign_in = _Lane("sign-in", concurrency, queue, max_wait)
        self.sign_up = _Lane("sign-up", (concurrency + 1) // 2, (queue + 1) // 2, max_wait)
        self._dummy_hash: str | None = None

    def close(self) -> None:
        self.sign_in.close()
        self.sign_up.close()

    async def hash(self, password: str) -> str:
        """A new hash (a sign-up, a new password): in the sign-up lane."""
        return await self.sign_up.run(hash_password_sync, password, self.rounds)

    async def check(self, password: str, password_hash: str | None) -> bool:
        """Check a password; with no hash (unknown user) spend the same time on a dummy one."""
        if password_hash is None:
            if self._dummy_hash is None:  # made in the sign-in lane: a sign-up flood must not refuse it
                self._dummy_hash = await self.sign_in.run(hash_password_sync, secrets.token_urlsafe(16), self.rounds)
            await self.sign_in.run(check_password_sync, password, self._dummy_hash)
            return False
        return await self.sign_in.run(check_password_sync, password, password_hash)


# ---------------------------------------------------------------- sessions

# How long a checked session is trusted without asking the database again (see SessionCache).
SESSION_CACHE_SECONDS = 5.0


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


async def start_session(user: User, days: int) -> str:
    """A new server-side session; returns the random token that the signed cookie carries."""
    token = secrets.token_urlsafe(32)
    await Session.create(token_hash=_token_hash(token), user=user, expires_at=utcnow() + timedelta(days=days))
    return token


async def revoke_session(token: str) -> int | None:
    """Revoke one session; returns its id (so that open sockets of that session can be closed)."""
    token_hash = _token_hash(token)
    session = await Session.get_or_none(token_hash=token_hash, revoked_at=None)
    if session is not None:
        await Session.filter(id=session.id).update(revoked_at=utcnow())
    _session_cache().drop(token_hash)  # after the update: a look-up from before it is not cached either
    return None if session is None else session.id


async def session_active(session_id: int) -> bool:
    return await Session.exists(id=session_id, revoked_at=None, expires_at__gt=utcnow())


async def revoke_other_sessions(user_id: int, keep_session_id: int) -> list[int]:
    """Revoke every session of the user but one (a password change signs out everywhere else)."""
    ids = (
        await Session.filter(user_id=user_id, revoked_at=None).exclude(id=keep_session_id).values_list("id", flat=True)
    )
    await Session.filter(id__in=list(ids)).update(revoked_at=utcnow())
    _session_cache().forget(lambda entry: entry.signed_in.user.id == user_id)
    return list(ids)


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


def _session_cache() -> SessionCache:
    return current_app.extensions["chat"].sessions


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
    async def is_authenticated(self) -> bool:
        return await self.resolve() is not None


async def _lookup_session(token: str, fresh: bool) -> SignedIn | None:
    token_hash = _token_hash(token)
    cache = _session_cache()
    if not fresh and (found := cache.get(token_hash)) is not None:
        return found
    generation, now = cache.generation, utcnow()
    session = (
        await Session.filter(token_hash=token_hash, revoked_at=None, expires_at__gt=now).select_related("user").first()
    )
    if session is None:
        return None
    found = SignedIn(session.id, session.user)
    cache.put(token_hash, found, (session.expires_at - now).total_seconds(), generation)
    return found


async def signed_in(fresh: bool = False) -> SignedIn:
    """The caller's session and user, or 401. Pass `fresh` where a stale user would matter (a password check)."""
    found = await current_user.resolve(fresh)
    if found is None:
        raise Unauthorized()
    return found


# ---------------------------------------------------------------- throttling


def _wait_until_out(oldest: float, window: float, now: float) -> int:
    """Whole seconds (1 to the window's) until a hit made at `oldest` leaves the window.

    Never more than the window: a concurrent caller's hit may carry a time a little after this caller's `now`.
    """
    return min(max(1, int(oldest + window - now + 0.999)), math.ceil(window))


class MemoryThrottle:
    """Counts of events (failed logins, sent messages) in sliding windows, per key, in this process.

    RedisThrottle keeps the same windows in Redis when workers share one (CHAT_BROKER_URL=redis://).
    Each hit is (time, slot): `take` names its hit so that `give_back` can remove exactly that one.
    """

    def __init__(self) -> None:
        self._hits: dict[str, deque[tuple[float, str]]] = {}
        self._writes = 0

    def _recent(self, key: str, window: float, now: float) -> deque[tuple[float, str]]:
        stamps = self._hits.get(key)
        if stamps is None:
            return deque()
        while stamps and stamps[0][0] <= now - window:
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
        return _wait_until_out(stamps[-limit][0], window, now)

    async def hit(self, key: str, window: float, slot: str = "") -> None:
        now = time.monotonic()
        self._hits.setdefault(key, deque()).append((now, slot))
        self._writes += 1
        if self._writes % 1024 == 0:  # forget keys whose hits all expired, so memory stays bounded
            for stale in list(self._hits):
                self._recent(stale, window, now)

    async def take(self, key: str, limit: int, window: float, slot: str) -> int | None:
        """Count a hit named `slot` if `key` is under `limit`, as one step; else the seconds to wait.

        Atomic in this process: nothing awaits between the check and the count, so concurrent callers can
        never take more than `limit` (a check now and a hit after the password check let 9 of 20 through).
        """
        if wait := await self.retry_after(key, limit, window):
            return wait
        await self.hit(key, window, slot)
        return None

    async def give_back(self, key: str, slot: str) -> None:
        """Undo one `take` (the attempt turned out not to be a failure)."""
        stamps = self._hits.get(key)
        if stamps is not None:
            for entry in [entry for entry in stamps if entry[1] == slot]:
                stamps.remove(entry)

    async def reset(self, key: str) -> None:
        self._hits.pop(key, None)


# Check and count in one step inside Redis: concurrent workers can never take more than the limit together.
# KEYS[1]: the sorted set; ARGV: now, window, limit, slot. Returns nil when taken, else the score of the hit
# whose expiry frees a place.
_TAKE_SCRIPT = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  return redis.call('ZRANGE', KEYS[1], -limit, -limit, 'WITHSCORES')[2]
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('EXPIRE', KEYS[1], math.ceil(window) + 1)
return false
"""


class RedisThrottle:
    """The same windows in Redis sorted sets, shared by every worker and machine.

    While Redis is unreachable each worker counts on its own (MemoryThrottle): limits loosen by the number of
    workers for that time, rather than every login and send failing.
    """

    def __init__(self, client, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._fallback = MemoryThrottle()
        self._take_script = client.register_script(_TAKE_SCRIPT)

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
        return _wait_until_out(oldest[0][1], window, now)

    async def hit(self, key: str, window: float) -> None:
        now = time.time()
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.zadd(self._prefix + key, {secrets.token_hex(8): now})
                pipe.expire(self._prefix + key, int(window) + 1)
                await pipe.execute()
        except (OSError, RedisError):
            await self._fallback.hit(key, window)

    async def take(self, key: str, limit: int, window: float, slot: str) -> int | None:
        now = time.time()
        try:
            oldest = await self._take_script(keys=[self._prefix + key], args=[now, window, limit, slot])
        except (OSError, RedisError):
            return await self._fallback.take(key, limit, window, slot)
        return None if oldest is None else _wait_until_out(float(oldest), window, now)

    async def give_back(self, key: str, slot: str) -> None:
        await self._fallback.give_back(key, slot)
        with contextlib.suppress(OSError, RedisError):
            await self._client.zrem(self._prefix + key, slot)

    async def reset(self, key: str) -> None:
        await self._fallback.reset(key)
        with contextlib.suppress(OSError, RedisError):
            await self._client.delete(self._prefix + key)


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


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def cross_site_navigation(allowed: tuple[str, ...]) -> bool:
    """Did another site send this request (a link, an <img>, a redirect)? Only a browser says so.

    Sec-Fetch-Site is the browser's own verdict ("none": typed or bookmarked by the user); older browsers are
    judged by Origin, then Referer (our Referrer-Policy, same-origin, lets our own pages send it). A request
    with none of them (curl, a native client) is no navigation from another site.
    """
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    for claimed in (request.headers.get("Origin"), request.headers.get("Referer")):
        if claimed:
            origin = claimed if claimed == "null" else _origin_of(claimed)
            return origin is None or not origin_allowed(origin, request.host, allowed)
    return False


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
