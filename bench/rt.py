"""Real-time clients: chat's websocket protocol and Socket.IO (the reference), and the three real-time scenarios.

Both speak over the same `websockets` client (no compression, no client pings), so the client's cost per frame
is the same against either server. The Socket.IO side is Engine.IO 4 / Socket.IO 5 over a websocket: python-
socketio's own clients need aiohttp or requests + websocket-client, which the reference does not install.
Scenario 5's idle sockets are read by a Watcher (bench/watch.py) once open, not by websockets: the same for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Self

import orjson
from websockets.asyncio.client import ClientConnection, connect

from . import watch
from .stats import CpuMeter, latency_summary

OnMessage = Callable[[str | None, float], None]
MAX_FRAME = 1 << 20
HANDSHAKE_SECONDS = 30  # a server that takes no more connections does not answer the upgrade: give up then


def room_of(a: int, b: int) -> str:
    return f"dm-{min(a, b)}-{max(a, b)}"


class RealtimeSocket:
    """One signed-in websocket in one room; calls on_message(client_id, receipt time) for every message frame."""

    ENGINEIO = False  # whether its server pings in Engine.IO packets (which a watcher must answer)

    def __init__(self, ws: ClientConnection, room: str, on_message: OnMessage) -> None:
        self.ws, self.room, self.on_message = ws, room, on_message
        self.reader: asyncio.Task | None = None
        self.watcher: watch.Watcher | None = None

    @classmethod
    async def connect(cls, ws_url: str, cookie: str, room: str) -> ClientConnection:
        """The websocket, open and in the room."""
        raise NotImplementedError

    @classmethod
    async def open(cls, ws_url: str, cookie: str, room: str, on_message: OnMessage) -> Self:
        sock = cls(await cls.connect(ws_url, cookie, room), room, on_message)
        sock.reader = asyncio.create_task(sock._read())
        return sock

    @classmethod
    async def watched(cls, ws_url: str, cookie: str, room: str, tally: watch.Tally, tag: bytes) -> Self:
        """An idle socket read by a Watcher (bench/watch.py) instead of a reader task: it only reports when the
        tag arrives, so that thousands of them do not make the harness the slowest part of a fan-out."""
        ws = await cls.connect(ws_url, cookie, room)
        sock = cls(ws, room, lambda *_: None)
        try:
            sock.watcher = await watch.hand_over(ws, tally, tag, cls.ENGINEIO)
        except BaseException:
            ws.transport.abort()
            raise
        return sock

    async def _read(self) -> None:
        raise NotImplementedError

    async def send_message(self, content: str, client_id: str) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        if self.watcher is not None:
            await self.watcher.close()
            return
        if self.reader is not None:
            self.reader.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)


async def _open(url: str, cookie: str) -> ClientConnection:
    return await connect(
        url,
        additional_headers={"Cookie": cookie},
        compression=None,
        ping_interval=None,
        max_size=MAX_FRAME,
        open_timeout=60,
    )


class ChatSocket(RealtimeSocket):
    @classmethod
    async def connect(cls, ws_url: str, cookie: str, room: str) -> ClientConnection:
        return await _open(f"{ws_url}/ws/rooms/{room}", cookie)

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for frame in self.ws:
                received = time.perf_counter()
                data = orjson.loads(frame)
                if data.get("type") == "message":
                    self.on_message(data["message"].get("client_id"), received)

    async def send_message(self, content: str, client_id: str) -> None:
        await self.ws.send(orjson.dumps({"type": "message", "content": content, "client_id": client_id}).decode())


class SocketIOSocket(RealtimeSocket):
    """Engine.IO 4 over a websocket: "0" open, "40" connect, "42[event, data]" events, "2"/"3" ping/pong."""

    ENGINEIO = True

    @classmethod
    async def connect(cls, ws_url: str, cookie: str, room: str) -> ClientConnection:
        async with asyncio.timeout(HANDSHAKE_SECONDS):
            ws = await _open(f"{ws_url}/socket.io/?EIO=4&transport=websocket", cookie)
            try:
                await cls._connect_and_join(ws, room)
            except BaseException:
                await ws.close()
                raise
        return ws

    @staticmethod
    async def _connect_and_join(ws: ClientConnection, room: str) -> None:
        opening = await ws.recv()
        if not str(opening).startswith("0"):
            raise RuntimeError(f"unexpected Engine.IO open packet {opening!r}")
        await ws.send("40")
        connected = await ws.recv()
        if not str(connected).startswith("40"):
            raise RuntimeError(f"Socket.IO connection refused: {connected!r}")
        await ws.send("420" + orjson.dumps(["join", {"room": room}]).decode())
        joined = await ws.recv()
        if not str(joined).startswith("430") or not orjson.loads(joined[3:])[0].get("ok"):
            raise RuntimeError(f"join refused: {joined!r}")

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for frame in self.ws:
                received = time.perf_counter()
                if frame == "2":
                    await self.ws.send("3")
                elif frame.startswith("42"):
                    event, data = orjson.loads(frame[2:])[:2]
                    if event == "message":
                        self.on_message(data.get("client_id"), received)

    async def send_message(self, content: str, client_id: str) -> None:
        frame = ["message", {"room": self.room, "content": content, "client_id": client_id}]
        await self.ws.send("42" + orjson.dumps(frame).decode())


def socket_class(protocol: str) -> type[ChatSocket] | type[SocketIOSocket]:
    return ChatSocket if protocol == "chat" else SocketIOSocket


@dataclass(eq=False)
class Pair:
    """A sender and a receiver in their own room; counts what the receiver got, once and more than once."""

    index: int
    tag: str  # unique per scenario run: a client_id used before would be deduplicated, not delivered
    sent: dict[str, float] = field(default_factory=dict)  # client_id -> when it was (meant to be) sent
    received: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    echoes: dict[str, asyncio.Future] = field(default_factory=dict)
    sender: RealtimeSocket | None = None
    receiver: RealtimeSocket | None = None

    def on_sender_frame(self, client_id: str | None, received: float) -> None:
        waiter = self.echoes.pop(client_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(received)

    def on_receiver_frame(self, client_id: str | None, received: float) -> None:
        if client_id not in self.sent:
            return
        self.received[client_id] += 1
        if self.received[client_id] == 1:
            self.latencies.append(received - self.sent[client_id])

    async def send(self, number: int, when: float) -> asyncio.Future:
        client_id = f"{self.tag}-{self.index}-{number}"
        echo = asyncio.get_running_loop().create_future()
        self.echoes[client_id] = echo
        self.sent[client_id] = when
        await self.sender.send_message(f"real-time message {number}", client_id)
        return echo


async def open_pairs(
    protocol: str, ws_url: str, cookies: dict[int, str], user_pairs: list[tuple[int, int]]
) -> list[Pair]:
    cls = socket_class(protocol)
    pairs = []
    tag = uuid.uuid4().hex[:8]
    for index, (a, b) in enumerate(user_pairs):
        pair = Pair(index, tag)
        room = room_of(a, b)
        pair.receiver = await cls.open(ws_url, cookies[b], room, pair.on_receiver_frame)
        pair.sender = await cls.open(ws_url, cookies[a], room, pair.on_sender_frame)
        pairs.append(pair)
    return pairs


async def close_pairs(pairs: list[Pair]) -> None:
    await asyncio.gather(*(sock.close() for pair in pairs for sock in (pair.sender, pair.receiver) if sock))


def _delivery(pairs: list[Pair]) -> dict:
    sent = sum(len(pair.sent) for pair in pairs)
    delivered = sum(len(pair.received) for pair in pairs)
    duplicated = sum(count - 1 for pair in pairs for count in pair.received.values())
    latencies = [value for pair in pairs for value in pair.latencies]
    return {
        "sent": sent,
        "delivered": delivered,
        "lost": sent - delivered,
        "duplicated": duplicated,
        **latency_summary(latencies),
    }


async def _drain(pairs: list[Pair], seconds: float) -> None:
    """Wait (at most `seconds`) until every receiver has every message sent to it."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if all(len(pair.received) >= len(pair.sent) for pair in pairs):
            return
        await asyncio.sleep(0.01)


async def closed_loop(pairs: list[Pair], seconds: float, echo_timeout: float = 10.0) -> dict:
    """Each sender sends, waits for its own echo, sends again: delivered msg/s and end-to-end latency."""
    stop_at = time.perf_counter() + seconds
    timeouts = 0

    async def run(pair: Pair) -> None:
        nonlocal timeouts
        number = 0
        while time.perf_counter() < stop_at:
            number += 1
            echo = await pair.send(number, time.perf_counter())
            try:
                await asyncio.wait_for(echo, echo_timeout)
            except TimeoutError:
                timeouts += 1

    with CpuMeter() as meter:
        await asyncio.gather(*(run(pair) for pair in pairs))
    await _drain(pairs, 5)
    result = _delivery(pairs)
    result.update(msg_per_s=round(result["delivered"] / meter.wall, 1), echo_timeouts=timeouts)
    result.update(seconds=round(meter.wall, 2), client_cpu_pct=meter.percent)
    return result


async def paced(rate: float, seconds: float) -> AsyncIterator[tuple[int, float]]:
    """(number, when it is due) for each message of an open loop, at its time: the schedule does not wait for
    answers."""
    start = time.perf_counter() + 0.05
    for number in range(int(rate * seconds)):
        due = start + number / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        yield number, due


async def open_loop(pairs: list[Pair], rate: float, seconds: float) -> dict:
    """Messages at a fixed offered rate, round robin over the pairs, whatever the answers.

    Latency runs from the moment each message was due, not when it left: a server that stalls cannot hide
    the messages that queued behind the stall (coordinated omission).
    """
    with CpuMeter() as meter:
        async for number, due in paced(rate, seconds):
            await pairs[number % len(pairs)].send(number, due)
        await _drain(pairs, 5)
    result = _delivery(pairs)
    result.update(offered_per_s=rate, seconds=round(seconds, 2), client_cpu_pct=meter.percent)
    return result


@dataclass
class FanOut:
    """Many idle sockets in one room; counts arrivals of one tagged message, and the sockets that ended without it
    (a watch.Tally)."""

    expected: int
    # a client_id of its own: a database used again (--rounds) would take a repeated one for a resend, store
    # and publish nothing, and answer with the first round's message
    tag: str = field(default_factory=lambda: f"fan-out-{uuid.uuid4().hex[:8]}")
    arrived: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    last_arrival: float = 0.0
    arrivals: list[float] = field(default_factory=list)
    closed_early: int = 0  # sockets that ended before the message reached them: the wait need not last for them
    close_reasons: Counter[str] = field(default_factory=Counter)

    def on_arrival(self, at: float) -> None:
        self.arrived += 1
        self.last_arrival = at
        self.arrivals.append(at)
        self._check()

    def on_closed(self, reason: str) -> None:
        self.closed_early += 1
        self.close_reasons[reason] += 1
        self._check()

    def expect(self, count: int) -> None:
        """As many arrivals as sockets opened (fewer than wanted when the server refused some)."""
        self.expected = count
        self._check()

    def _check(self) -> None:
        if self.arrived + self.closed_early >= self.expected:
            self.done.set()

    def percentiles(self, sent: float) -> dict[str, float]:
        """The arrival of the message at the median socket and at the 99th percentile, ms after it was sent."""
        if not self.arrivals:
            return {}
        ordered = sorted(self.arrivals)
        at = lambda share: round((ordered[min(len(ordered) - 1, int(share * len(ordered)))] - sent) * 1000, 1)  # noqa: E731
        return {"fan_out_p50_ms": at(0.5), "fan_out_p99_ms": at(0.99)}


async def open_idle(
    protocol: str, ws_url: str, cookies: list[str], room: str, count: int, fan_out: FanOut, parallel: int = 32
) -> tuple[list[RealtimeSocket], list[str]]:
    """Open up to `count` watched sockets, `parallel` handshakes at a time; stops at the first refusals (fd
    limits)."""
    cls = socket_class(protocol)
    tag = fan_out.tag.encode()
    sockets: list[RealtimeSocket] = []
    errors: list[str] = []
    gate = asyncio.Semaphore(parallel)

    async def one(number: int) -> None:
        if errors:  # the server takes no more: stop there
            return
        async with gate:
            try:
                sockets.append(await cls.watched(ws_url, cookies[number % len(cookies)], room, fan_out, tag))
            except Exception as exc:  # noqa: BLE001 - reported: how many opened, and why the rest did not
                errors.append(f"{type(exc).__name__}: {exc}")

    await asyncio.gather(*(one(number) for number in range(count)))
    return sockets, errors


async def close_all(sockets: list[RealtimeSocket], parallel: int = 256) -> None:
    gate = asyncio.Semaphore(parallel)

    async def one(sock: RealtimeSocket) -> None:
        async with gate:
            await sock.close()

    await asyncio.gather(*(one(sock) for sock in sockets))


@dataclass(eq=False)
class Channel:
    """A channel's members, each with a socket; counts what each member got of each message, once and more."""

    room: str
    tag: str
    members: list[int]
    sent: dict[str, float] = field(default_factory=dict)  # client_id -> when it was due
    received: dict[int, Counter[str]] = field(default_factory=dict)  # member -> client_id -> arrivals
    latencies: list[float] = field(default_factory=list)
    sockets: list[RealtimeSocket] = field(default_factory=list)

    def on_frame(self, member: int) -> OnMessage:
        counts = self.received.setdefault(member, Counter())

        def on_message(client_id: str | None, received: float) -> None:
            if client_id not in self.sent:
                return
            counts[client_id] += 1
            if counts[client_id] == 1:
                self.latencies.append(received - self.sent[client_id])

        return on_message


async def open_channel(ws_url: str, room: str, cookies: dict[int, str], members: list[int]) -> Channel:
    channel = Channel(room, uuid.uuid4().hex[:8], members)
    for member in members:
        channel.sockets.append(await ChatSocket.open(ws_url, cookies[member], room, channel.on_frame(member)))
    return channel


async def _drain_channel(channel: Channel, seconds: float) -> None:
    """Wait (at most `seconds`) until every member has every message sent."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if all(len(counts) >= len(channel.sent) for counts in channel.received.values()):
            return
        await asyncio.sleep(0.01)


async def channel_loop(channel: Channel, rate: float, seconds: float) -> dict:
    """Messages into the channel at a fixed offered rate, from its members in turn, whatever the answers; latency
    from when each was due to each member's arrival (coordinated omission, as open_loop)."""
    with CpuMeter() as meter:
        async for number, due in paced(rate, seconds):
            client_id = f"{channel.tag}-{number}"
            channel.sent[client_id] = due
            await channel.sockets[number % len(channel.sockets)].send_message(f"channel message {number}", client_id)
        await _drain_channel(channel, 5)
    deliveries = len(channel.sent) * len(channel.members)
    delivered = sum(len(counts) for counts in channel.received.values())
    duplicated = sum(n - 1 for counts in channel.received.values() for n in counts.values())
    return {
        "members": len(channel.members),
        "sent": len(channel.sent),
        "deliveries": deliveries,
        "delivered": delivered,
        "lost": deliveries - delivered,
        "duplicated": duplicated,
        **latency_summary(channel.latencies),
        "offered_per_s": rate,
        "seconds": round(seconds, 2),
        "client_cpu_pct": meter.percent,
    }
