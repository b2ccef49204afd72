"""Clients that httpx and websockets do not provide: websockets over HTTP/2 (RFC 8441 extended CONNECT, with the
h2 and wsproto packages hypercorn itself uses) and HTTP/3 requests (aioquic)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
from aioquic.asyncio.client import connect as quic_connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent
from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import CloseConnection, Message, Ping, TextMessage


def client_context(certs: Path, client_cert: bool = False, alpn: list[str] | None = None) -> ssl.SSLContext:
    """A TLS client context that trusts certs/ca.crt (and presents certs/client.crt when asked)."""
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    if client_cert:
        context.load_cert_chain(certs / "client.crt", certs / "client.key")
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


class WebSocketRefused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"websocket refused with HTTP {status}")
        self.status = status


# ---------------------------------------------------------------- websockets over HTTP/2


@dataclass
class H2WebSocket:
    """One websocket: one HTTP/2 stream of an H2Client's connection."""

    client: H2Client
    stream_id: int
    frames: asyncio.Queue = field(default_factory=asyncio.Queue)
    ws: WSConnection = field(default_factory=lambda: WSConnection(ConnectionType.CLIENT))
    _text: list[str] = field(default_factory=list)

    async def send_json(self, frame: dict) -> None:
        self.client.h2.send_data(self.stream_id, self.ws.send(TextMessage(data=json.dumps(frame))))
        await self.client.flush()

    async def receive_json(self, timeout: float = 10) -> dict:
        """The next server frame; a close or a reset of the stream raises ConnectionError."""
        item = await asyncio.wait_for(self.frames.get(), timeout)
        if isinstance(item, Exception):
            raise item
        return json.loads(item)

    async def reset(self) -> None:
        """Drop this websocket without a close handshake: RST_STREAM, as a browser tab that is killed."""
        self.client.h2.reset_stream(self.stream_id, h2.errors.ErrorCodes.CANCEL)
        await self.client.flush()

    def _receive(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, Message):
                self._text.append(event.data)
                if event.message_finished:
                    self.frames.put_nowait("".join(self._text))
                    self._text.clear()
            elif isinstance(event, Ping):
                self.client.h2.send_data(self.stream_id, self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self.frames.put_nowait(ConnectionError(f"closed by the server with {event.code}"))


class H2Client:
    """One TLS connection that speaks HTTP/2 and carries any number of websockets."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, authority: str) -> None:
        self.reader, self.writer, self.authority = reader, writer, authority
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.sockets: dict[int, H2WebSocket] = {}
        self.responses: dict[int, asyncio.Future[int]] = {}
        self.connect_protocol = asyncio.Event()
        self._reading: asyncio.Task | None = None

    @classmethod
    async def open(cls, host: str, port: int, context: ssl.SSLContext) -> H2Client:
        context.set_alpn_protocols(["h2"])
        reader, writer = await asyncio.open_connection(host, port, ssl=context)
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
        client = cls(reader, writer, f"{host}:{port}")
        client.h2.initiate_connection()
        await client.flush()
        client._reading = asyncio.create_task(client._read())
        return client

    async def flush(self) -> None:
        self.writer.write(self.h2.data_to_send())
        await self.writer.drain()

    async def websocket(self, path: str, headers: dict[str, str], timeout: float = 10) -> H2WebSocket:
        # RFC 8441: a server announces SETTINGS_ENABLE_CONNECT_PROTOCOL before a client may send :protocol
        await asyncio.wait_for(self.connect_protocol.wait(), timeout)
        stream_id = self.h2.get_next_available_stream_id()
        self.responses[stream_id] = asyncio.get_running_loop().create_future()
        socket = self.sockets[stream_id] = H2WebSocket(self, stream_id)
        request = [
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "https"),
            (":path", path),
            (":authority", self.authority),
            ("sec-websocket-version", "13"),
            *((name.lower(), value) for name, value in headers.items()),
        ]
        self.h2.send_headers(stream_id, request)
        await self.flush()
        status = await asyncio.wait_for(self.responses[stream_id], timeout)
        if status != 200:
            raise WebSocketRefused(status)
        return socket

    def abort(self) -> None:
        """Drop the whole connection at once: no close frame, no GOAWAY, as a machine that loses its network."""
        self.writer.transport.abort()
        if self._reading is not None:
            self._reading.cancel()

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            self.h2.close_connection()
            await self.flush()
        self.writer.close()
        if self._reading is not None:
            self._reading.cancel()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()

    async def _read(self) -> None:
        try:
            while data := await self.reader.read(65536):
                for event in self.h2.receive_data(data):
                    self._handle(event)
                await self.flush()
        except (ConnectionError, ssl.SSLError):
            pass
        for socket in self.sockets.values():
            socket.frames.put_nowait(ConnectionError("the connection closed"))

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RemoteSettingsChanged):
            if self.h2.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL):
                self.connect_protocol.set()
        elif isinstance(event, h2.events.ResponseReceived):
            status = int(dict(event.headers)[":status"])
            with contextlib.suppress(asyncio.InvalidStateError):
                self.responses[event.stream_id].set_result(status)
        elif isinstance(event, h2.events.DataReceived):
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if event.stream_id in self.sockets:
                self.sockets[event.stream_id]._receive(event.data)
        elif isinstance(event, h2.events.StreamReset | h2.events.StreamEnded) and event.stream_id in self.sockets:
            self.sockets[event.stream_id].frames.put_nowait(ConnectionError("the stream ended"))


# ---------------------------------------------------------------- HTTP/3


@dataclass
class H3Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


class H3Client(QuicConnectionProtocol):
    """HTTP/3 requests over one QUIC connection (aioquic's H3Connection; one request per stream)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.http = H3Connection(self._quic)
        self.authority = ""
        self._pending: dict[int, tuple[asyncio.Future[H3Response], dict, bytearray]] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        for h3_event in self.http.handle_event(event):
            if not isinstance(h3_event, HeadersReceived | DataReceived) or h3_event.stream_id not in self._pending:
                continue
            future, headers, body = self._pending[h3_event.stream_id]
            if isinstance(h3_event, HeadersReceived):
                headers.update((name.decode(), value.decode()) for name, value in h3_event.headers)
            else:
                body.extend(h3_event.data)
            if h3_event.stream_ended:
                del self._pending[h3_event.stream_id]
                future.set_result(H3Response(int(headers.pop(":status")), headers, bytes(body)))

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"", timeout: float = 10
    ) -> H3Response:
        stream_id = self._quic.get_next_available_stream_id()
        future = asyncio.get_running_loop().create_future()
        self._pending[stream_id] = (future, {}, bytearray())
        fields = [(b":method", method.encode()), (b":scheme", b"https"), (b":authority", self.authority.encode())]
        fields += [(b":path", path.encode())]
        fields += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
        self.http.send_headers(stream_id, fields, end_stream=not body)
        if body:
            self.http.send_data(stream_id, body, end_stream=True)
        self.transmit()
        return await asyncio.wait_for(future, timeout)


@contextlib.asynccontextmanager
async def h3_client(host: str, port: int, ca_file: Path, server_name: str) -> AsyncIterator[H3Client]:
    configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=server_name)
    configuration.load_verify_locations(str(ca_file))
    async with quic_connect(host, port, configuration=configuration, create_protocol=H3Client) as client:
        client.authority = f"{server_name}:{port}"
        yield client
