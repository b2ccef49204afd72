"""Websocket helpers for tests against a real server: people, frames, a resuming client and a raw client."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from chat.rooms import room_for

from .http import signed_in_client
from .servers import Server

COOKIE = "chat_session"
RESUMABLE = (1001, 1013)  # close codes after which a client reconnects with ?after and resumes
_names = itertools.count(1)


@dataclass
class Person:
    """A signed-in user: a sync httpx client (set-up), an async one (concurrent sends) and the session cookie."""

    server: Server
    http: httpx.Client
    user: dict

    @property
    def id(self) -> int:
        return self.user["id"]

    @property
    def cookie(self) -> str:
        return self.http.cookies[COOKIE]

    def async_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.server.base_url, cookies={COOKIE: self.cookie}, timeout=30)

    def room_with(self, other: Person) -> str:
        return room_for(self.id, other.id)

    def connect(self, room: str, after: int | None = None, **kwargs: Any) -> connect:
        return ws_connect(self.server, self.cookie, room, after=after, **kwargs)

    def stored_ids(self, other: Person) -> list[int]:
        """Every stored message id of the conversation, oldest first, paged through GET /get-messages."""
        ids: list[int] = []
        while True:
            params = {"user_id": other.id, "after": ids[-1] if ids else 0, "limit": 200}
            page = self.http.get("/get-messages", params=params).json()
            ids += [message["id"] for message in page["messages"]]
            if not page["has_more"]:
                return ids

    def online(self, other: Person) -> bool:
        users = self.http.get("/get-users").json()["users"]
        return next(user["online"] for user in users if user["id"] == other.id)


def new_person(server: Server, prefix: str = "user") -> Person:
    """A fresh account (unique name, so that many tests can share one server)."""
    http, user = signed_in_client(server.base_url, f"{prefix}{next(_names)}-{os.getpid()}")
    return Person(server, http, user)


def ws_connect(
    server: Server, cookie: str | None, room: str, *, after: int | None = None, origin: str | None = None, **kwargs
) -> connect:
    url = f"{server.ws_url}/ws/rooms/{room}" + (f"?after={after}" if after is not None else "")
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
    kwargs.setdefault("open_timeout", 10)
    return connect(url, additional_headers=headers, origin=origin or server.base_url, **kwargs)


async def refusal(server: Server, path: str, cookie: str | None, origin: str | None = None) -> tuple[int, dict]:
    """The HTTP status and JSON body with which the server refuses a websocket handshake at `path`."""
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
    try:
        async with connect(server.ws_url + path, additional_headers=headers, origin=origin or server.base_url):
            pass
    except InvalidStatus as exc:
        return exc.response.status_code, json.loads(exc.response.body)
    raise AssertionError(f"{path} was accepted")


# ---------------------------------------------------------------- frames


async def recv_frame(ws: ClientConnection, timeout: float = 5.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(
    ws: ClientConnection, predicate: Callable[[dict], bool], timeout: float = 5.0, seen: list[dict] | None = None
) -> dict:
    """The first frame that matches `predicate`, waiting at most `timeout` seconds in all.

    Every frame read on the way (the match included) is appended to `seen` when given.
    """
    frames = [] if seen is None else seen
    try:
        async with asyncio.timeout(timeout):
            while True:
                frame = json.loads(await ws.recv())
                frames.append(frame)
                if predicate(frame):
                    return frame
    except TimeoutError:
        raise AssertionError(f"no matching frame within {timeout}s; got {frames[-20:]}") from None


def message_frame(content: str | None = None, client_id: str | None = None) -> Callable[[dict], bool]:
    def match(frame: dict) -> bool:
        if frame["type"] != "message":
            return False
        message = frame["message"]
        return (content is None or message["content"] == content) and (
            client_id is None or message["client_id"] == client_id
        )

    return match


def presence_frame(user_id: int, online: bool) -> Callable[[dict], bool]:
    return lambda frame: frame == {"type": "presence", "user_id": user_id, "online": online}


def send_frame(content: str, client_id: str | None = None) -> str:
    # non-ASCII unescaped, as browsers' JSON.stringify sends it: 4000 characters of content fit in a frame
    return json.dumps({"type": "message", "content": content, "client_id": client_id}, ensure_ascii=False)


async def wait_for(
    condition: Callable[[], bool], timeout: float, interval: float = 0.05, what: Callable[[], str] = str
) -> float:
    """Poll a (blocking, quick) condition until it holds, the event loop running meanwhile; returns the seconds
    it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not await asyncio.to_thread(condition):
        if loop.time() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s: {what()}")
        await asyncio.sleep(interval)
    return loop.time() - start


# ---------------------------------------------------------------- a well-behaved resuming client


@dataclass
class ResumingClient:
    """What a good chat client does with one room: remember the last message id it got, reconnect with
    ?after=that id when the server closes with 1001 or 1013, and resend what was not acknowledged (same client_id).
    With `hang_up_every`, it also drops its connection after that many messages, as a flaky network would.
    """

    person: Person
    room: str
    hang_up_every: int | None = None
    hang_ups: int = 0
    received: list[dict] = field(default_factory=list)  # every message frame's message, across reconnects
    pending: dict[str, str] = field(default_factory=dict)  # client_id -> content, sent but not acknowledged
    close_codes: list[int] = field(default_factory=list)
    ws: ClientConnection | None = None

    @property
    def ids(self) -> list[int]:
        return [message["id"] for message in self.received]

    async def open(self, after: int | None = None) -> None:
        after = self.ids[-1] if self.received else after
        self.ws = await self.person.connect(self.room, after=after, max_size=2**20)
        await self.resend()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def send(self, content: str, client_id: str) -> None:
        self.pending[client_id] = content
        await self._send(client_id, content)

    async def _send(self, client_id: str, content: str) -> None:
        with contextlib.suppress(ConnectionClosed):  # resent after the reconnect
            await self.ws.send(send_frame(content, client_id))

    async def pump(self, done: Callable[[], bool], timeout: float) -> None:
        """Read frames (reconnecting as needed) until done() holds."""
        async with asyncio.timeout(timeout):
            on_this_connection = 0
            while not done():
                if on_this_connection == self.hang_up_every:
                    await self.ws.close()  # what was in flight is lost with the connection
                    self.hang_ups += 1
                    await self.open()
                    on_this_connection = 0
                try:
                    frame = json.loads(await self.ws.recv())
                except ConnectionClosed as exc:
                    code = exc.rcvd.code if exc.rcvd else None
                    self.close_codes.append(code)
                    if code not in RESUMABLE:
                        raise
                    await self.open()
                    on_this_connection = 0
                    continue
                if frame["type"] == "message":
                    self._on_message(frame["message"])
                    on_this_connection += 1
                elif frame["type"] == "error" and frame["error"] == "unavailable":
                    await self.resend()  # the database was busy: try again

    def _on_message(self, message: dict) -> None:
        self.received.append(message)
        if message["sender_id"] == self.person.id:
            self.pending.pop(message["client_id"], None)  # the echo is the acknowledgement

    async def resend(self) -> None:
        for client_id, content in list(self.pending.items()):
            await self._send(client_id, content)


# ---------------------------------------------------------------- a raw client (for clients that misbehave)


class RawWebsocket:
    """A websocket client written by hand over a TCP socket, so that a test can stop reading (a slow
    reader) or never answer pings (a dead client) - which a real client library will not do."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(
        cls, server: Server, room: str, cookie: str, after: int | None = None, receive_buffer: int | None = None
    ) -> RawWebsocket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connect, so that the TCP window stays small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        path = f"/ws/rooms/{room}" + (f"?after={after}" if after is not None else "")
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {server.base_url}\r\n"
            f"Cookie: {COOKIE}={cookie}\r\n\r\n"
        )
        writer.write(request.encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send_text(self, text: str) -> None:
        self._send(0x81, text.encode())

    def send_binary(self, payload: bytes) -> None:
        self._send(0x82, payload)

    def _send(self, first: int, payload: bytes) -> None:
        """One masked frame: `first` is its first byte (FIN and the opcode)."""
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", first, 0x80 | length)
        elif length < 2**16:
            header = struct.pack("!BBH", first, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", first, 0x80 | 127, length)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.writer.write(header + mask + masked)

    async def read_frame(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame from the server (server frames are never masked)."""
        async with asyncio.timeout(timeout):
            first, second = await self.reader.readexactly(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
            return first & 0x0F, await self.reader.readexactly(length)

    async def frames_until_close(self, timeout: float) -> tuple[list[dict], int]:
        """Every text frame up to the close frame, and the close code."""
        frames = []
        async with asyncio.timeout(timeout):
            while True:
                opcode, payload = await self.read_frame(timeout)
                if opcode == 0x1:
                    frames.append(json.loads(payload))
                elif opcode == 0x8:
                    return frames, struct.unpack("!H", payload[:2])[0]

    def abort(self) -> None:
        self.writer.transport.abort()

    @property
    def local_port(self) -> int:
        return self.writer.get_extra_info("sockname")[1]
