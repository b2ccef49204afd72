"""Who is online: a user with at least one open websocket anywhere."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from typing import Protocol

from redis.exceptions import RedisError

from .broker import Event

log = logging.getLogger(__name__)


def presence_channel(user_id: int) -> str:
    return f"presence:{user_id}"


# everyone's presence on one channel: the sockets of channels and activity streams, which care about many users,
# listen to it (one subscription per worker) rather than to one channel per user
ALL_PRESENCE = "presence-all"


def presence_event(user_id: int, online: bool) -> Event:
    return Event.build(presence_channel(user_id), {"type": "presence", "user_id": user_id, "online": online})


def presence_events(user_id: int, online: bool) -> tuple[Event, Event]:
    """A change of a user's presence, for those who watch that user and for those who watch everyone."""
    frame = {"type": "presence", "user_id": user_id, "online": online}
    return Event.build(presence_channel(user_id), frame), Event.build(ALL_PRESENCE, frame)


class Presence(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def connect(self, user_id: int) -> bool: ...  # True: the user just came online
    async def disconnect(self, user_id: int) -> bool: ...  # True: the user just went offline
    async def online(self, user_ids: list[int]) -> set[int]: ...


class MemoryPresence:
    """Socket counts in this process: the whole truth when there is one process."""

    def __init__(self) -> None:
        self._sockets: Counter[int] = Counter()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def connect(self, user_id: int) -> bool:
        self._sockets[user_id] += 1
        return self._sockets[user_id] == 1

    async def disconnect(self, user_id: int) -> bool:
        self._sockets[user_id] -= 1
        if self._sockets[user_id] <= 0:
            del self._sockets[user_id]
            return True
        return False

    async def online(self, user_ids: list[int]) -> set[int]:
        return {user_id for user_id in user_ids if self._sockets[user_id] > 0}

    def users(self) -> list[int]:
        return list(self._sockets)


class RedisPresence:
    """Presence shared by workers and machines.

    Each worker counts its own sockets and keeps, per user it has online, an entry `worker id -> expiry` in
    the sorted set `presence:{user}`, renewed by a heartbeat. A user is online while some entry has not
    expired, so a worker killed with -9 leaves its users online for at most `ttl` seconds. The heartbeat
    also re-checks the users that local sockets watch and tells them of changes nobody announced (expiry).
    """

    def __init__(self, client, prefix: str, ttl: float, broker) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl = ttl
        self._broker = broker
        self._worker = uuid.uuid4().hex
        self._local = MemoryPresence()
        self._known: dict[int, bool] = {}
        self._heartbeat: asyncio.Task | None = None

    def _key(self, user_id: int) -> str:
        return f"{self._prefix}presence:{user_id}"

    async def start(self) -> None:
        self._heartbeat = asyncio.create_task(self._beat(), name="presence-heartbeat")

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        with contextlib.suppress(OSError, RedisError):
            async with self._client.pipeline(transaction=False) as pipe:
                for user_id in self._local.users():
                    pipe.zrem(self._key(user_id), self._worker)
                await pipe.execute()

    async def connect(self, user_id: int) -> bool:
        if not await self._local.connect(user_id):
            return False
        now = time.time()
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.zadd(self._key(user_id), {self._worker: now + self._ttl})
            pipe.zcount(self._key(user_id), now, "+inf")
            pipe.expire(self._key(user_id), int(self._ttl) + 1)
            _, live, _ = await pipe.execute()
        return live == 1

    async def disconnect(self, user_id: int) -> bool:
        if not await self._local.disconnect(user_id):
            return False
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.zrem(self._key(user_id), self._worker)
                pipe.zcount(self._key(user_id), time.time(), "+inf")
                _, live = await pipe.execute()
        except (OSError, RedisError):
            return False  # the entry expires by itself
        return live == 0

    async def online(self, user_ids: list[int]) -> set[int]:
        if not user_ids:
            return set()
        now = time.time()
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for user_id in user_ids:
                    pipe.zcount(self._key(user_id), now, "+inf")
                counts = await pipe.execute()
        except (OSError, RedisError):
            return await self._local.online(user_ids)  # what this worker knows, rather than an error
        return {user_id for user_id, count in zip(user_ids, counts, strict=True) if count}

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            try:
                await self._renew()
                await self._sweep()
            except (OSError, RedisError) as exc:
                log.warning("presence heartbeat failed: %s", exc)

    async def _renew(self) -> None:
        users = self._local.users()
        if not users:
            return
        expiry = time.time() + self._ttl
        async with self._client.pipeline(transaction=False) as pipe:
            for user_id in users:
                pipe.zadd(self._key(user_id), {self._worker: expiry})
                pipe.expire(self._key(user_id), int(self._ttl) + 1)
            await pipe.execute()

    async def _sweep(self) -> None:
        watched = [int(c.split(":", 1)[1]) for c in self._broker.local_channels() if c.startswith("presence:")]
        online = await self.online(watched)
        for user_id in watched:
            state = user_id in online
            if self._known.get(user_id, state) != state:
                await self._broker.deliver_locally(presence_event(user_id, state))
            self._known[user_id] = state
        for user_id in set(self._known) - set(watched):
            del self._known[user_id]
