"""Scenario 5's idle sockets, watched without `websockets`: thousands of sockets, each waiting for one message.

A `websockets` reader task per socket (woken, the frame assembled, decoded, orjson.loads) cost the harness more per
socket than the server spent sending it: at 10 000 sockets the last arrival was recorded long after the server had
done its part, so the figure measured the client. Once a socket is open (and, for Socket.IO, joined), its TCP
transport goes to a Watcher, a plain asyncio.Protocol: no task, no decoding; it looks for the fan-out's tag in the
raw bytes and walks the frame headers only to answer pings and notice a close.

websockets 17.4's asyncio ClientConnection is the transport's protocol itself and, with ping_interval=None, runs no
task or timer of its own once open: after `transport.set_protocol(watcher)` nothing else reads that transport,
times out on it or closes it. What it had already read is handed over too (`hand_over`).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Protocol

from websockets.asyncio.client import ClientConnection
from websockets.protocol import State

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
NORMAL_CLOSURE = (1000).to_bytes(2, "big")
ENGINEIO_PING, ENGINEIO_PONG = b"2", b"3"
HANDOVER_SECONDS = 5  # a frame half read by websockets when the socket opened: the rest is on its way
CLOSE_SECONDS = 5  # for the server's answer to our close frame; then the connection is aborted


class Tally(Protocol):
    """Where watchers report: the fan-out's arrival at a socket, or the end of a socket that had not got it."""

    def on_arrival(self, at: float) -> None: ...

    def on_closed(self, reason: str) -> None: ...


def client_frame(opcode: int, payload: bytes = b"") -> bytes:
    """One final client frame with a control-sized payload (< 126 bytes), masked as a client's must be (RFC 6455
    5.3): a server may close an unmasked one."""
    key = os.urandom(4)
    size = len(payload)
    masked = int.from_bytes(payload, "big") ^ int.from_bytes((key * (size // 4 + 1))[:size], "big")
    return bytes((0x80 | opcode, 0x80 | size)) + key + masked.to_bytes(size, "big")


def frame_at(data: bytes | bytearray, start: int) -> tuple[int, int, int] | None:
    """(opcode, start of payload, end) of the server frame at `start`; None while it is incomplete.

    A server's frames are unmasked (RFC 6455 5.1): a masked one is an error, not something to guess around."""
    if len(data) - start < 2:
        return None
    second = data[start + 1]
    if second & 0x80:
        raise ValueError("masked frame from the server")
    size, head = second & 0x7F, start + 2
    if size >= 126:
        width = 2 if size == 126 else 8
        if len(data) < head + width:
            return None
        size, head = int.from_bytes(data[head : head + width], "big"), head + width
    end = head + size
    return (data[start] & 0x0F, head, end) if end <= len(data) else None


class Watcher(asyncio.Protocol):
    """An open websocket's transport, read only for what scenario 5 needs: when the tag arrived, pings, the end."""

    __slots__ = ("transport", "tally", "tag", "engineio", "tail", "pending", "arrival", "ended", "closing")

    def __init__(self, transport: asyncio.Transport, tally: Tally, tag: bytes, engineio: bool) -> None:
        self.transport, self.tally, self.tag, self.engineio = transport, tally, tag, engineio
        self.tail = b""  # the last len(tag) - 1 bytes read: a tag split across two reads is still found
        self.pending = bytearray()  # the start of a frame whose rest has not arrived
        self.arrival: float | None = None
        self.ended: str | None = None  # why the connection ended, once it has
        self.closing: asyncio.Future[None] | None = None  # set by our own close(): the end is then no error

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()  # first: the arrival is this read, not the end of the parsing below
        if self.arrival is None:
            self._spot(data, now)
        buffer: bytes | bytearray = data
        if self.pending:
            self.pending += data
            buffer = self.pending
        parsed = self._frames(buffer)
        if buffer is self.pending:
            del self.pending[:parsed]
        elif parsed < len(buffer):
            self.pending = bytearray(buffer[parsed:])

    def _spot(self, data: bytes, now: float) -> None:
        """The tag (ASCII, and literally in the unmasked frame of either protocol) in these bytes, or across the
        previous read and these: the socket has the message, counted once."""
        window = self.tail + data if self.tail else data
        if self.tag in window:
            self.arrival, self.tail = now, b""
            self.tally.on_arrival(now)
        else:
            self.tail = window[max(0, len(window) - len(self.tag) + 1) :]

    def _frames(self, buffer: bytes | bytearray) -> int:
        """Act on the whole frames in `buffer` (only control frames and Engine.IO's one-byte packets are looked
        into); how many bytes they took."""
        start = 0
        try:
            while not self.transport.is_closing() and (frame := frame_at(buffer, start)) is not None:
                opcode, head, start = frame
                if opcode >= CLOSE or (self.engineio and start - head == 1):
                    self._control(opcode, bytes(buffer[head:start]))
        except ValueError as exc:  # the stream cannot be followed any further: end it, and say why
            self._end(f"protocol error: {exc}")
            self.transport.abort()
            return len(buffer)
        return start

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == PING:
            self.transport.write(client_frame(PONG, payload))
        elif opcode == CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self._end(f"closed by the server ({code})")
            if self.closing is None:  # its close frame first: answer with the same code (RFC 6455 5.5.1)
                self.transport.write(client_frame(CLOSE, payload[:2]))
            self.transport.close()
        elif opcode == TEXT and payload == ENGINEIO_PING:  # else the server drops us after pingTimeout
            self.transport.write(client_frame(TEXT, ENGINEIO_PONG))

    def eof_received(self) -> None:
        self._end("connection closed by the server without a close frame")

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(f"connection lost: {exc!r}" if exc else "connection closed")
        if self.closing is not None and not self.closing.done():
            self.closing.set_result(None)

    def _end(self, reason: str) -> None:
        """The first reason the connection ended; reported when it ended before the message and not by us."""
        if self.ended is None:
            self.ended = reason
            if self.arrival is None and self.closing is None:
                self.tally.on_closed(reason)

    async def close(self) -> None:
        """A normal close, as a server expects it: our close frame, the server's answer and the end of the TCP
        connection, at most CLOSE_SECONDS (then aborted)."""
        if self.transport.is_closing():
            return
        self.closing = asyncio.get_running_loop().create_future()
        self.transport.write(client_frame(CLOSE, NORMAL_CLOSURE))
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                await self.closing
        except TimeoutError:
            self.transport.abort()


def _between_frames(ws: ClientConnection) -> bool:
    """Whether websockets' parser has taken nothing of a next frame yet: bytes of a frame it had begun would be
    lost to a watcher. The parser is a chain of generators (ClientProtocol.parse, Protocol.parse,
    StreamReader.at_eof) that waits in at_eof exactly between frames, when nothing is buffered."""
    parser = ws.protocol.parser
    while parser.gi_yieldfrom is not None:
        parser = parser.gi_yieldfrom
    return parser.gi_code.co_name == "at_eof"


async def hand_over(ws: ClientConnection, tally: Tally, tag: bytes, engineio: bool) -> Watcher:
    """The open websocket's transport, from websockets to a Watcher, with the frames websockets had read already
    (the presence and backlog frames a chat socket gets first, an Engine.IO ping) passed on to it."""
    async with asyncio.timeout(HANDOVER_SECONDS):
        # websockets' parser sets no event when a frame is complete: look again shortly
        while ws.protocol.state is State.OPEN and not _between_frames(ws):  # noqa: ASYNC110
            await asyncio.sleep(0.001)
    watcher = Watcher(ws.transport, tally, tag, engineio)
    ws.transport.set_protocol(watcher)
    queued = ws.recv_messages.frames.queue  # data frames only: websockets answered pings itself
    if queued:
        watcher.data_received(b"".join(frame.serialize(mask=False) for frame in queued))
        queued.clear()
    ws.transport.resume_reading()  # websockets pauses reading when frames queue up unread; nothing if it did not
    if ws.protocol.state is not State.OPEN:  # its close frame came before the handover: websockets answered it
        received = ws.protocol.close_rcvd
        watcher._end(f"closed by the server ({received.code if received else 1006}) before the handover")
    return watcher
