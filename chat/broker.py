"""Fan-out of real-time events to the connections subscribed to a room.

The database is the source of truth; the broker only carries events. `memory://` serves one process;
a Redis implementation behind the same interface serves many (CHAT_BROKER_URL).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

import orjson


@dataclass(frozen=True, slots=True)
class Event:
    """One event for a room, encoded once however many sockets receive it."""

    room: str
    type: str
    text: str  # the JSON frame, as sent to websockets
    message_id: int | None = None  # for "message" events: lets a resuming socket skip what it replayed

    @classmethod
    def build(cls, room: str, frame: dict) -> Event:
        message = frame.get("message") if frame.get("type") == "message" else None
        return cls(room, frame["type"], orjson.dumps(frame).decode(), message["id"] if message else None)


@dataclass(eq=False)
class Subscription:
    """One connection's bounded queue. When it overflows, the connection is told to go (it resumes with ?after)."""

    room: str
    queue: asyncio.Queue[Event]
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, event: Event) -> None:
        if self.overflowed.is_set():
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed.set()


class Broker(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def publish(self, event: Event) -> None: ...
    async def subscribe(self, room: str, queue_size: int) -> Subscription: ...
    async def unsubscribe(self, subscription: Subscription) -> None: ...


class MemoryBroker:
    def __init__(self) -> None:
        self._rooms: dict[str, set[Subscription]] = {}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self._rooms.clear()

    async def publish(self, event: Event) -> None:
        for subscription in tuple(self._rooms.get(event.room, ())):
            subscription.offer(event)

    async def subscribe(self, room: str, queue_size: int) -> Subscription:
        subscription = Subscription(room, asyncio.Queue(queue_size))
        self._rooms.setdefault(room, set()).add(subscription)
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        members = self._rooms.get(subscription.room)
        if members is not None:
            members.discard(subscription)
            if not members:
                del self._rooms[subscription.room]


def create_broker(url: str) -> Broker:
    if url.startswith("memory://"):
        return MemoryBroker()
    raise NotImplementedError(f"broker {url.split(':', 1)[0]}:// is not available yet")
