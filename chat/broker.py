"""Fan-out of real-time events to the connections subscribed to a channel.

The database is the source of truth; the broker only carries events. `memory://` serves one process;
a Redis implementation behind the same interface serves many (CHAT_BROKER_URL).

Channels: `room:dm-1-2` and `room:ch-7` (messages, typing, read; member and room changes of a channel),
`presence:7` (user 7 came online / went offline), `presence-all` (everyone's presence, for channel and activity
sockets), `inbox:7` (what concerns user 7 wherever they are: direct messages, their read markers, rooms added and
removed: their activity streams), `session:42` (session 42 was revoked: its sockets close).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import orjson
from redis.exceptions import RedisError

from .mailbox import Flag, Mailbox

log = logging.getLogger(__name__)
SUBSCRIBE_TIMEOUT = 5.0
STOP_TIMEOUT = 3.0


# the frames of changes to messages (chat/changes.py): events of a room's sequence, like its messages
CHANGE_FRAMES = frozenset({"edit", "delete", "reaction"})


class TextMessage(dict):
    """The ASGI message that sends one websocket text frame. Under hypercorn (lean_hypercorn) it also keeps the
    frame's bytes once framed, so that an event sent to many sockets is framed once, not once per socket."""

    __slots__ = ("frame",)


def text_message(text: str) -> TextMessage:
    """The ASGI message that sends `text` as one websocket text frame."""
    message = TextMessage(type="websocket.send", bytes=None, text=text)
    message.frame = None
    return message


@dataclass(frozen=True, slots=True)
class Event:
    """One event for a channel, encoded once however many sockets receive it."""

    channel: str
    type: str
    text: str  # the JSON frame, as sent to websockets
    # "message" and change events: the id in the room's sequence, lets a socket skip what it already sent
    message_id: int | None = None
    user_id: int | None = None  # who caused it: a socket does not relay a user's own typing back to them
    # a new message's commit, as wall-clock time.time() (comparable across workers): its fan-out latency (metrics)
    stored_at: float | None = None
    # the ASGI message that sends `text`: one for all the sockets that send this event (asgi_websocket.send_event)
    asgi: TextMessage = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "asgi", text_message(self.text))

    @classmethod
    def build(cls, channel: str, frame: dict, stored_at: float | None = None) -> Event:
        if frame["type"] == "message":
            sequence_id = frame["message"]["id"]
        else:  # a change to a message: its event id, from the same sequence
            sequence_id = frame["id"] if frame["type"] in CHANGE_FRAMES else None
        text = orjson.dumps(frame).decode()
        return cls(channel, frame["type"], text, sequence_id, frame.get("user_id"), stored_at)

    def on(self, channel: str) -> Event:
        """The same event on another channel, sharing its encoded frame (dataclasses.replace would encode it again,
        and costs more than the event's building)."""
        event = object.__new__(Event)
        for name in Event.__slots__:
            object.__setattr__(event, name, getattr(self, name))
        object.__setattr__(event, "channel", channel)
        return event

    def to_bytes(self) -> bytes:
        return orjson.dumps([self.channel, self.type, self.text, self.message_id, self.user_id, self.stored_at])

    @classmethod
    def from_bytes(cls, data: bytes) -> Event:
        return cls(*orjson.loads(data))


@dataclass(eq=False, slots=True)
class Subscription:
    """One connection's bounded queue over several channels (a plain `Mailbox`: one per socket, 10 000 of them).

    When it overflows the connection must go (it resumes from the database with ?after) rather than let
    the server's memory grow for a client that cannot keep up.
    """

    channels: tuple[str, ...]
    queue: Mailbox
    overflowed: Flag = field(default_factory=Flag)
    # set by a socket waiting with nothing queued: takes an item at once (True), or leaves it to the queue (False)
    deliver_now: Callable[[object], bool] | None = None

    def offer(self, item: object) -> None:
        if self.overflowed.is_set():
            return
        if self.deliver_now is not None and self.deliver_now(item):
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
    # the events in this order, in one round trip where the broker has them (a batch of stored messages)
    async def publish_many(self, events: list[Event]) -> None: ...
    # `into`: deliver to that subscription's queue too (a socket whose channels change as it lives: GET /ws/me)
    async def subscribe(
        self, channels: tuple[str, ...], queue_size: int, into: Subscription | None = None
    ) -> Subscription: ...
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

    async def publish_many(self, events: list[Event]) -> None:
        for event in events:
            await self.publish(event)

    async def subscribe(
        self, channels: tuple[str, ...], queue_size: int, into: Subscription | None = None
    ) -> Subscription:
        if into is None:
            subscription = Subscription(channels, Mailbox(queue_size))
        else:  # one queue and one overflow for both: the socket's task reads them as one
            subscription = Subscription(channels, into.queue, into.overflowed)
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

    def disconnect_all(self) -> None:
        """Tell every subscriber to go (as if it had overflowed): used when events may have been lost."""
        for members in self._channels.values():
            for subscription in members:
                subscription.overflowed.set()


class RedisBroker:
    """Redis pub/sub across workers and machines: one pub/sub connection per worker, multiplexing every
    channel its sockets need; events reach local sockets through an in-process MemoryBroker.

    Redis keeps no history: while it is unreachable, events are lost. So on an outage every local socket is
    told to go (its subscription overflows: close 1013) and resumes from the database with ?after once the
    broker is back; HTTP sends keep storing meanwhile.
    """

    ordered = False  # two workers may publish one room's messages out of id order: sockets fill gaps

    def __init__(self, client, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._local = MemoryBroker()
        self._refcounts: dict[str, int] = {}
        self._confirmations: dict[str, asyncio.Future] = {}
        self._pubsub = None
        self._reader: asyncio.Task | None = None
        self._healthy = False
        self._wake = asyncio.Event()
        self._stopping = False
        self._connected = asyncio.Event()

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._run(), name="redis-broker")
        # serve with a working broker when Redis is there; when it is not, start anyway and keep trying
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), STOP_TIMEOUT)

    async def stop(self) -> None:
        self._stopping = True
        if self._reader is not None:
            # redis-py can swallow a cancellation that lands as its read times out: the flag ends the loop then
            self._reader.cancel()
            await asyncio.wait({self._reader}, timeout=STOP_TIMEOUT)
        if self._pubsub is not None:
            await self._pubsub.aclose()
        await self._local.stop()

    def healthy(self) -> bool:
        return self._healthy

    def local_channels(self) -> list[str]:
        return list(self._refcounts)

    async def deliver_locally(self, event: Event) -> None:
        await self._local.publish(event)

    async def publish(self, event: Event) -> None:
        try:
            await self._client.publish(self._prefix + event.channel, event.to_bytes())
        except (OSError, RedisError) as exc:
            # the message is stored: sockets were closed on the outage and will replay it from the database
            log.warning("broker publish failed: %s", exc)

    async def publish_many(self, events: list[Event]) -> None:
        # one pipeline: one round trip and one read of Redis for the lot, in order on one connection
        if not events:
            return
        try:
            async with self._client.pipeline(transaction=False) as pipeline:
                for event in events:
                    pipeline.publish(self._prefix + event.channel, event.to_bytes())
                await pipeline.execute()
        except (OSError, RedisError) as exc:
            log.warning("broker publish of %d events failed: %s", len(events), exc)

    async def subscribe(
        self, channels: tuple[str, ...], queue_size: int, into: Subscription | None = None
    ) -> Subscription:
        if not self._healthy:
            log.warning("subscription refused: the broker is not connected")
            raise BrokerUnavailable()
        new = [channel for channel in channels if channel not in self._refcounts]
        for channel in channels:
            self._refcounts[channel] = self._refcounts.get(channel, 0) + 1
        subscription = await self._local.subscribe(channels, queue_size, into)
        try:
            await self._redis_subscribe(new)
        except BaseException:
            await self.unsubscribe(subscription)
            raise
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        await self._local.unsubscribe(subscription)
        gone = []
        for channel in subscription.channels:
            count = self._refcounts.get(channel, 0) - 1
            if count > 0:
                self._refcounts[channel] = count
            else:
                self._refcounts.pop(channel, None)
                gone.append(channel)
        if gone and self._healthy and self._pubsub is not None:
            with contextlib.suppress(OSError, RedisError):  # an outage: the reader notices it
                await self._pubsub.unsubscribe(*(self._prefix + channel for channel in gone))

    async def _redis_subscribe(self, channels: list[str]) -> None:
        """SUBSCRIBE and wait for Redis to confirm: only then is no later publish missed."""
        if not channels:
            return
        loop = asyncio.get_running_loop()
        waits = []
        for channel in channels:
            key = self._prefix + channel
            future = self._confirmations.get(key)
            if future is None:
                future = self._confirmations[key] = loop.create_future()
            waits.append(future)
        try:
            await self._pubsub.subscribe(*(self._prefix + channel for channel in channels))
            self._wake.set()
            await asyncio.wait_for(asyncio.gather(*waits), SUBSCRIBE_TIMEOUT)
        except (OSError, RedisError, TimeoutError) as exc:
            log.warning("subscribing to %d channels failed: %r", len(channels), exc)
            raise BrokerUnavailable() from exc

    async def _run(self) -> None:
        delay = 0.1
        while not self._stopping:
            try:
                await self._connect()
                delay = 0.1
                await self._read()
            except Exception as exc:  # noqa: BLE001 - whatever broke the connection, recover the same way
                self._outage(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _connect(self) -> None:
        if self._pubsub is not None:
            await self._pubsub.aclose()
        await self._client.ping()
        self._pubsub = self._client.pubsub()
        # Take the pub/sub connection now, before any socket subscribes: redis-py takes it on the first
        # SUBSCRIBE, and two first SUBSCRIBEs at once each took a connection of their own. The reader then
        # listened on one of them, and what the other subscribed was never confirmed (the socket refused
        # with 503) nor delivered (tests/unit/test_broker.py reproduces it).
        await self._pubsub.connect()
        wanted = list(self._refcounts)
        self._healthy = True
        self._connected.set()
        if wanted:  # sockets that subscribed during the outage were refused: normally nothing here
            await self._pubsub.subscribe(*(self._prefix + channel for channel in wanted))
        log.info("broker connected")

    async def _read(self) -> None:
        while not self._stopping:
            if not self._pubsub.subscribed:
                self._wake.clear()
                await self._wake.wait()
                continue
            message = await self._pubsub.get_message(timeout=1.0)
            if message is None:
                continue
            kind, channel = message["type"], message["channel"].decode()
            if kind == "message":
                await self._local.publish(Event.from_bytes(message["data"]))
            elif kind == "subscribe":
                future = self._confirmations.pop(channel, None)
                if future is not None and not future.done():
                    future.set_result(None)

    def _outage(self, exc: BaseException) -> None:
        if self._healthy:
            log.warning("broker connection lost: %s", exc)
        self._healthy = False
        for future in self._confirmations.values():
            if not future.done():
                future.set_exception(BrokerUnavailable())
        self._confirmations.clear()
        self._local.disconnect_all()


class BrokerUnavailable(Exception):
    """The broker cannot take subscriptions now: real-time connections are refused until it is back."""
