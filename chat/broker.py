"""Fan-out of real-time events to the connections subscribed to a channel.

The database is the source of truth; the broker only carries events. `memory://` serves one process;
a Redis implementation behind the same interface serves many (CHAT_BROKER_URL).

Channels: `room:dm-1-2` (messages, typing, read), `presence:7` (user 7 came online / went offline),
`session:42` (session 42 was revoked: its sockets close).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

import orjson


@dataclass(frozen=True, slots=True)
class Event:
    """One event for a channel, encoded once however many sockets receive it."""

    channel: str
    type: str
    text: str  # the JSON frame, as sent to websockets
    message_id: int | None = None  # "message" events: lets a socket skip what it already sent
    user_id: int | None = None  # who caused it: a socket does not relay a user's own typing back to them

    @classmethod
    def build(cls, channel: str, frame: dict) -> Event:
        message = frame.get("message") if frame["type"] == "message" else None
        return cls(
            channel,
            frame["type"],
            orjson.dumps(frame).decode(),
            message["id"] if message else None,
            frame.get("user_id"),
        )

    def to_bytes(self) -> bytes:
        return orjson.dumps([self.channel, self.type, self.text, self.message_id, self.user_id])

    @classmethod
    def from_bytes(cls, data: bytes) -> Event:
        return cls(*orjson.loads(data))


@dataclass(eq=False)
class Subscription:
    """One connection's bounded queue over several channels.

    When it overflows the connection must go (it resumes from the database with ?after) rather than let
    the server's memory grow for a client that cannot keep up.
    """

    channels: tuple[str, ...]
    queue: asyncio.Queue
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, item: object) -> None:
        if self.overflowed.is_set():
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed.set()


class Broker(Protocol):
    # True when events of one channel arrive in the order they were published (one process);
    # otherwise a socket fills gaps in message ids from the database.
    ordered: bool

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def publish(self, event: Event) -> None: ...
    async def subscribe(self, channels: tuple[str, ...], queue_size: int) -> Subscription: ...
    async def unsubscribe(self, subscription: Subscription) -> None: ...
    def healthy(self) -> bool: ...


class MemoryBroker:
    ordered = True

    def __init__(self) -> None:
        self._channels: dict[str, set[Subscription]] = {}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self._channels.clear()

    async def publish(self, event: Event) -> None:
        for subscription in tuple(self._channels.get(event.channel, ())):
            subscription.offer(event)

    async def subscribe(self, channels: tuple[str, ...], queue_size: int) -> Subscription:
        subscription = Subscription(channels, asyncio.Queue(queue_size))
        for channel in channels:
            self._channels.setdefault(channel, set()).add(subscription)
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        for channel in subscription.channels:
            members = self._channels.get(channel)
            if members is not None:
                members.discard(subscription)
                if not members:
                    del self._channels[channel]

    def healthy(self) -> bool:
        return True


def create_broker(url: str) -> Broker:
    if url.startswith("memory://"):
        return MemoryBroker()
    raise NotImplementedError(f"the {url.split(':', 1)[0]}:// broker is not available in this version")
