"""What chat.lean_hypercorn takes out of hypercorn's connections: the app's events through a Mailbox with
hypercorn's bound, no h11 state once a websocket upgrade is accepted, permessage-deflate declined, no asyncio.Event
until one is awaited, a frame sent to many sockets framed once, the keep-alive timeout as a timer, the Date header
once a second and an answer's headers checked once per pair (real websockets through hypercorn:
tests/system/test_websocket.py and the rest)."""

from __future__ import annotations

import asyncio
import time
from wsgiref.handlers import format_date_time

import h11
import pytest
import wsproto
import wsproto.events
from h11._headers import normalize_and_validate
from hypercorn.asyncio.task_group import TaskGroup
from hypercorn.config import Config
from hypercorn.events import RawData
from hypercorn.protocol import h11 as hypercorn_h11
from hypercorn.protocol.events import Data
from hypercorn.protocol.ws_stream import Handshake, WSStream
from hypercorn.utils import UnexpectedMessageError

from chat import lean_hypercorn
from chat.broker import text_message

UPGRADE = (
    b"GET /ws/rooms/dm-1-2 HTTP/1.1\r\nHost: chat.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.fixture(autouse=True)
def installed():
    lean_hypercorn.install()  # as create_app does


async def test_the_app_takes_its_events_in_order_and_a_full_queue_holds_hypercorn_back():
    config = Config()
    received: list[dict] = []
    reading = asyncio.Event()

    async def app(scope, receive, send, sync_spawn, call_soon):
        await reading.wait()
        while len(received) < config.max_app_queue_size + 1:
            received.append(await receive())

    async def send(message) -> None:
        pass

    async with TaskGroup(asyncio.get_running_loop()) as group:
        put = await group.spawn_app(app, config, {"type": "websocket"}, send)
        for number in range(config.max_app_queue_size):
            await put({"type": "websocket.receive", "text": str(number)})
        one_more = asyncio.ensure_future(put({"type": "websocket.disconnect", "code": 1000}))
        await asyncio.sleep(0.01)
        assert not one_more.done()  # hypercorn waits: it stops reading the socket
        reading.set()
        await asyncio.wait_for(one_more, 1)
    assert [event.get("text") for event in received] == [str(n) for n in range(config.max_app_queue_size)] + [None]
    assert received[-1]["type"] == "websocket.disconnect"


def upgraded(answer: h11.InformationalResponse | h11.Response) -> tuple[hypercorn_h11.H11WSConnection, bytes]:
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(UPGRADE)
    assert isinstance(connection.next_event(), h11.Request)
    wrapper = hypercorn_h11.H11WSConnection(connection)  # the name hypercorn's protocol looks up
    return wrapper, wrapper.send(answer)


def test_an_accepted_upgrade_lets_go_of_h11_and_frames_pass_through():
    wrapper, data = upgraded(h11.InformationalResponse(status_code=101, headers=[(b"upgrade", b"websocket")]))
    assert data.startswith(b"HTTP/1.1 101 ") and wrapper.h11_connection is None
    wrapper.receive_data(b"\x81\x05hello")
    assert wrapper.next_event().data == b"\x81\x05hello"
    with pytest.raises(RuntimeError):
        wrapper.send(h11.Data(data=b"x"))


def test_a_refused_upgrade_is_answered_through_h11_as_before():
    wrapper, data = upgraded(h11.Response(status_code=403, headers=[(b"content-length", b"2")]))
    assert data.startswith(b"HTTP/1.1 403 ") and wrapper.h11_connection is not None
    assert wrapper.send(h11.Data(data=b"no")) == b"no"


HANDSHAKE_HEADERS = [
    (b"host", b"chat.test"),
    (b"upgrade", b"websocket"),
    (b"connection", b"Upgrade"),
    (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
    (b"sec-websocket-version", b"13"),
]


def test_permessage_deflate_is_declined_whatever_the_client_offers():
    headers = [*HANDSHAKE_HEADERS, (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits")]
    handshake = Handshake(headers, "1.1")
    assert handshake.is_valid()
    status, answer, connection = handshake.accept(None, [])
    assert status == 101 and b"sec-websocket-extensions" not in dict(answer)
    assert not any(extension.enabled() for extension in connection._proto.extensions)


async def test_hypercorns_events_make_no_asyncio_event_until_awaited_and_behave_as_one():
    from hypercorn.asyncio.worker_context import WorkerContext

    event = WorkerContext.event_class()
    assert isinstance(event, lean_hypercorn.LazyEvent) and event._event is None
    await event.set()
    await asyncio.wait_for(event.wait(), 1)  # set: no wait, and still no asyncio.Event
    assert event.is_set() and event._event is None
    await event.clear()
    waiter = asyncio.ensure_future(event.wait())
    await asyncio.sleep(0.01)
    assert not waiter.done() and not event.is_set()
    await event.set()
    await asyncio.wait_for(waiter, 1)
    await event.clear()
    assert not event.is_set()
    another = asyncio.ensure_future(event.wait())
    await asyncio.sleep(0.01)
    assert not another.done()  # cleared: waits again on the same asyncio.Event
    await event.set()
    await asyncio.wait_for(another, 1)


class Connection(hypercorn_h11.H11Protocol):
    """Where a websocket stream's bytes go: hypercorn's HTTP/1.1 protocol, recording what is sent through it."""

    def __init__(self) -> None:  # none of H11Protocol's state: only its two sends are used
        self.sent: list[object] = []

    async def stream_send(self, event) -> None:  # hypercorn's path: a stream event, framed by wsproto
        self.sent.append(event)

    async def send(self, event) -> None:  # the bytes for the socket (what stream_send makes of a Data)
        self.sent.append(event)


CLOSE = wsproto.events.CloseConnection(code=1000)


async def accepted_stream() -> tuple[WSStream, Connection]:
    connection = Connection()
    stream = WSStream(None, Config(), None, None, False, None, None, connection.stream_send, 1)
    stream.handshake = Handshake(HANDSHAKE_HEADERS, "1.1")
    stream.scope, stream.start_time = {}, 0.0  # read by the access log of the accept
    await stream.app_send({"type": "websocket.accept"})
    connection.sent.clear()  # the 101
    return stream, connection


@pytest.mark.parametrize("text", ["hi", "é" * 100, "x" * 70_000], ids=["short", "16-bit length", "64-bit length"])
async def test_a_frame_sent_to_many_sockets_is_framed_once_into_the_bytes_wsproto_makes(text):
    message = text_message(text)
    sockets = [await accepted_stream() for _ in range(3)]
    for stream, _ in sockets:
        await stream.app_send(message)
    written = [connection.sent for _, connection in sockets]
    assert all(len(sent) == 1 and isinstance(sent[0], RawData) for sent in written)
    assert all(sent[0].data is message.frame for sent in written)  # one frame's bytes for all
    assert message.frame == wsproto.Connection(wsproto.ConnectionType.SERVER).send(wsproto.events.Message(data=text))


async def test_other_frames_go_hypercorns_way_and_none_is_written_once_a_close_is_under_way():
    stream, connection = await accepted_stream()
    await stream.app_send({"type": "websocket.send", "bytes": None, "text": "a plain dict"})
    assert [type(event) for event in connection.sent] == [Data]  # framed by wsproto, as before

    async def app_put(event) -> None:
        pass

    stream.app_put = app_put
    await stream.handle(Data(stream_id=1, data=wsproto.Connection(wsproto.ConnectionType.CLIENT).send(CLOSE)))
    connection.sent.clear()  # hypercorn's answer to the client's close
    await stream.app_send(text_message("too late"))  # the client is closing: hypercorn drops the frame
    assert connection.sent == []
    await stream.app_send({"type": "websocket.close", "code": 1000})
    connection.sent.clear()
    with pytest.raises(UnexpectedMessageError):  # after the app's own close, as hypercorn
        await stream.app_send(text_message("later still"))
    assert connection.sent == []


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.buffered = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closing


class TCPServer:
    """What write_now reaches below the HTTP/1.1 protocol: hypercorn's TCPServer, its writer and send lock."""

    def __init__(self) -> None:
        self.send_lock = asyncio.Lock()
        self.writer = type("Writer", (), {})()
        self.writer.transport = Transport()

    async def protocol_send(self, event) -> None:
        raise AssertionError("hypercorn's path: not taken by write_now")


async def test_a_frame_is_written_at_once_only_when_the_connection_takes_it_without_waiting():
    stream, connection = await accepted_stream()
    server = TCPServer()
    connection.send = server.protocol_send
    transport = server.writer.transport
    message = text_message("now")

    def write_now(message) -> bool:
        return lean_hypercorn.write_now(stream.app_send, message)

    assert write_now(message) and transport.written == [message.frame]
    transport.buffered = 10  # the client is not reading everything: hypercorn's path waits for it
    assert not write_now(message)
    transport.buffered = 0
    async with server.send_lock:  # a frame is being written through hypercorn
        assert not write_now(message)
    transport.closing = True
    assert not write_now(message)
    transport.closing = False
    await stream.app_send({"type": "websocket.close", "code": 1000})
    assert not write_now(message)
    assert transport.written == [message.frame]


def test_there_is_no_writing_at_once_under_another_server():
    async def send(message) -> None:
        pass

    assert not lean_hypercorn.write_now(send, text_message("no"))


# ---------------------------------------------------------------- keep-alive: a timer, not two tasks a request


slow_requests_begun: list[float] = []  # when each /slow request reached the app


async def answer(scope, receive, send) -> None:
    if scope["type"] == "http":
        if scope["path"] == "/slow":
            slow_requests_begun.append(asyncio.get_running_loop().time())
            await asyncio.sleep(0.3)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


REQUEST = b"GET / HTTP/1.1\r\nHost: chat.test\r\n\r\n"
SLOW_REQUEST = b"GET /slow HTTP/1.1\r\nHost: chat.test\r\n\r\n"


async def served(keep_alive_timeout: float):
    """hypercorn's own serve() on a free loopback port, in this process: (port, stop, the serve task)."""
    from hypercorn.asyncio import serve

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.keep_alive_timeout = keep_alive_timeout
    config.graceful_timeout = 5
    config.accesslog = config.errorlog = None
    stop = asyncio.Event()
    sockets = config.create_sockets()  # bound here, so that the port is known before serve() listens on it
    config.create_sockets = lambda: sockets
    task = asyncio.ensure_future(serve(answer, config, shutdown_trigger=stop.wait))
    return sockets.insecure_sockets[0].getsockname()[1], stop, task


async def connect(port: int):
    """A connection to the served port, once serve() listens on it."""
    for _ in range(100):
        try:
            return await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            await asyncio.sleep(0.02)
    raise TimeoutError(f"nothing listens on {port}")


async def ask(reader, writer) -> bytes:
    writer.write(REQUEST)
    return await asyncio.wait_for(reader.readuntil(b"ok"), 2)


def keep_alive_tasks() -> list[asyncio.Task]:
    return [task for task in asyncio.all_tasks() if "_idle_timeout" in repr(task.get_coro())]


async def test_an_idle_connection_is_closed_after_the_keep_alive_timeout_and_a_busy_one_is_not(monkeypatch):
    loop = asyncio.get_running_loop()
    went_idle: list[float] = []  # when the server armed the connection's timer (it went idle)
    restart = lean_hypercorn.KeepAliveTimer.restart

    async def recording_restart(timer, task_group, action) -> None:
        went_idle.append(loop.time())
        await restart(timer, task_group, action)

    monkeypatch.setattr(lean_hypercorn.KeepAliveTimer, "restart", recording_restart)
    port, stop, serving = await served(keep_alive_timeout=0.3)
    reader, writer = await connect(port)
    for number in range(6):  # 0.5 s of requests 0.1 s apart: each one starts the idle time anew
        if number:
            await asyncio.sleep(0.1)
        assert (await ask(reader, writer)).startswith(b"HTTP/1.1 200")
        assert keep_alive_tasks() == []  # idle between requests, with no task waiting for it
    assert await asyncio.wait_for(reader.read(), 2) == b""  # closed by the server
    # the server's own clock, not the client's: a pause of this process before the client saw the last answer
    # would shorten the time the client measures
    assert 0.29 < loop.time() - went_idle[-1] < 1.5  # after the timeout (0.3 s) from the last answer, not at once
    writer.close()
    stop.set()
    await asyncio.wait_for(serving, 5)


async def test_a_stopping_worker_closes_its_idle_connections_at_once_and_answers_the_busy_one():
    port, stop, serving = await served(keep_alive_timeout=30)
    idle_reader, idle_writer = await connect(port)
    assert (await ask(idle_reader, idle_writer)).startswith(b"HTTP/1.1 200")
    busy_reader, busy_writer = await connect(port)
    slow_requests_begun.clear()
    busy_writer.write(SLOW_REQUEST)  # being answered: the connection is not idle
    for _ in range(200):
        if slow_requests_begun:
            break
        await asyncio.sleep(0.01)
    assert slow_requests_begun
    loop = asyncio.get_running_loop()
    stopping = loop.time()
    stop.set()
    assert await asyncio.wait_for(idle_reader.read(), 2) == b""  # not after 30 s, nor graceful_timeout's 5
    assert (await asyncio.wait_for(busy_reader.read(), 2)).startswith(b"HTTP/1.1 200")  # answered, then closed
    await asyncio.wait_for(serving, 2)
    assert loop.time() - stopping < 1.5
    idle_writer.close()
    busy_writer.close()


# ---------------------------------------------------------------- an answer's headers: Date once a second, checked once


def test_the_date_header_is_formatted_once_a_second_as_hypercorn_formats_it():
    now = 1_764_900_000.25
    assert lean_hypercorn._http_date(now) == format_date_time(now) == "Fri, 05 Dec 2025 02:00:00 GMT"
    assert lean_hypercorn._http_date(now + 0.5) is lean_hypercorn._http_date(now)  # the same second's, kept
    assert lean_hypercorn._http_date(now + 1) == format_date_time(now + 1)
    date = dict(Config().response_headers("h11"))[b"date"]
    assert date.decode() in (format_date_time(time.time() - 1), format_date_time(time.time()))


class CountingPattern:
    """A compiled pattern that counts its fullmatch calls."""

    def __init__(self, pattern) -> None:
        self.pattern, self.calls = pattern, 0

    def fullmatch(self, data):
        self.calls += 1
        return self.pattern.fullmatch(data)


def test_an_answers_headers_are_checked_once_per_pair_and_normalized_as_h11_does(monkeypatch):
    names = CountingPattern(lean_hypercorn._FIELD_NAME)
    monkeypatch.setattr(lean_hypercorn, "_FIELD_NAME", names)
    monkeypatch.setattr(lean_hypercorn, "_VALID_PAIRS", set())
    headers = [(b"Content-Type", b"application/json"), ("X-Frame-Options", "DENY"), (b"content-length", b"12")]

    first = h11.Response(status_code=200, headers=headers).headers
    assert names.calls == 3
    again = h11.Response(status_code=200, headers=headers).headers
    assert names.calls == 3  # nothing checked twice
    assert list(first.raw_items()) == list(again.raw_items()) == list(normalize_and_validate(headers).raw_items())
    assert first == normalize_and_validate(headers)  # lower-cased names, as h11 stores them


@pytest.mark.parametrize(
    "headers, message",
    [
        ([(b"X-Request-Id", b"a\r\nSet-Cookie: b")], "Illegal header value"),
        ([(b"Bad Name", b"x")], "Illegal header name"),
        ([(b"content-length", b"1"), (b"content-length", b"2")], "conflicting Content-Length"),
        ([(b"content-length", b"-1")], "bad Content-Length"),
        ([(b"transfer-encoding", b"gzip")], "Only Transfer-Encoding: chunked"),
    ],
)
def test_an_answers_bad_headers_are_refused_with_h11s_own_error_every_time(headers, message):
    for _ in range(2):  # a refused pair is not remembered as valid
        with pytest.raises(h11.LocalProtocolError, match=message):
            h11.Response(status_code=200, headers=headers)
    with pytest.raises(h11.LocalProtocolError, match=message):
        h11.Connection(h11.SERVER).send(h11.Response(status_code=200, headers=headers))


def test_headers_parsed_from_a_request_pass_through_as_before():
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(b"GET / HTTP/1.1\r\nHost: chat.test\r\nX-A: 1\r\n\r\n")
    request = connection.next_event()
    assert list(request.headers) == [(b"host", b"chat.test"), (b"x-a", b"1")]
