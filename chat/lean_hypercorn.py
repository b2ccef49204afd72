"""Four things hypercorn 0.18 keeps for every connection that this server does not need, taken out; one thing
it does for every frame sent that a frame sent to many sockets needs done once; and one it does for every request
that a timer does.

At 10 000 idle websockets on a worker each KiB per socket is 10 MB (docs/performance.md, "Lean sockets"):

1. **The app's receive queue.** hypercorn hands each connection's events to the app through an
   `asyncio.Queue(max_app_queue_size)`: four deques and an Event, ~3 KiB before it holds anything, for the life of
   the connection. Here it is a `Mailbox` of the same bound (six slots; its deque lives while events wait),
   with the same behaviour: `receive` waits for an event, `put` waits while `max_app_queue_size` events wait (the
   backpressure that asgi_websocket.py and asgi_http.py rely on).
2. **The HTTP/1.1 state machine of an upgraded connection.** After a websocket upgrade hypercorn keeps the
   `h11.Connection` (~2 KiB) inside its pass-through wrapper, to send the handshake's answer; once the answer is a
   101 only websocket frames follow, which bypass it. Here the wrapper lets go of it after the 101. (A refused
   handshake is answered through it as before.)
3. **permessage-deflate.** hypercorn accepts the compression every browser offers, and wsproto then keeps a zlib
   compressor for each socket from its first frame on, for the life of the socket (context takeover): measured,
   an idle socket cost ~130 KiB with it instead of ~33 (1 000 sockets offering it, RSS of the worker). Chat's
   frames are small JSON, so compressing them saves little on the wire; here no extension is negotiated and the
   client sends and receives plain frames (RFC 7692 lets a server decline).
4. **An asyncio.Event per HTTP/1.1 connection** (`can_read`, ~0.8 KiB with its deque of waiters), awaited only when
   a client pipelines a request before the previous answer is sent, never on a websocket. Here hypercorn's events
   are `LazyEvent`s, which make their asyncio.Event when first awaited.
5. **Framing each frame for each socket.** hypercorn hands every text frame to wsproto, which encodes the text and
   builds the frame's header, then passes the bytes down through two more layers of event objects to the
   connection's writer. A server frame is the same bytes on every socket (unmasked; no extension is negotiated,
   3.; hypercorn never fragments a message), so a `broker.TextMessage` keeps its frame once framed, and on an
   HTTP/1.1 websocket in the open state it is written through the connection's own send (its lock and
   backpressure, as hypercorn's path ends). A message to 10 000 sockets is framed once; that path was about 40 %
   of the fan-out's time (docs/performance.md, part 5). `write_now` writes such a frame at once, for a socket
   whose connection takes it without waiting (blueprints/realtime.py, `_deliver_now`).
6. **Two tasks per request for the keep-alive timeout.** Each time an HTTP connection goes idle (after every
   answer) hypercorn starts a task that waits, through `asyncio.wait_for` (a second task), for keep_alive_timeout
   or the worker's shutdown, and when the next request arrives it cancels that task and waits for it to end: about
   4 % of a send's throughput (measured with the timeout taken out). Here going idle arms a timer handle and a
   request disarms it (`KeepAliveTimer`); when it fires, or when the worker begins to stop while the connection
   is idle, the connection is closed as hypercorn's task would close it.

7. **The Date header formatted for every answer.** hypercorn formats the time (`wsgiref`'s `format_date_time`) for
   each response; the header changes once a second. Here each second's is formatted once (`_http_date`).
8. **Every answer's headers checked against HTTP's grammar, every time.** h11 runs two regular expressions over
   each header of each response (and builds a dict of each match); an answer of chat's JSON API has nine, most of
   them the same on every answer (the security headers, the content type, the server's name). Here a pair that
   passed once is not checked again (`_normalize_and_validate_once`): a pair seen for the first time (a request
   id, a length, a file's name) is checked as before, and one that fails raises h11's own error as before.

`install()` (called by create_app) applies all eight to the hypercorn and h11 versions they were written against,
and refuses to start on others: these replace their internals, so a new version must be read again before it is
pinned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from importlib.metadata import version
from wsgiref.handlers import format_date_time

import h11
from h11 import _events as h11_events
from h11 import _headers as h11_headers
from hypercorn import config as hypercorn_config
from hypercorn.asyncio import task_group, tcp_server, worker_context
from hypercorn.events import RawData
from hypercorn.protocol import h11 as hypercorn_h11
from hypercorn.protocol import ws_stream
from wsproto.connection import ConnectionState
from wsproto.frame_protocol import FrameProtocol

from .broker import TextMessage
from .mailbox import Mailbox

HYPERCORN_VERSION = "0.18.0"
H11_VERSION = "0.16.0"


async def _spawn_app(self: task_group.TaskGroup, app, config, scope, send):
    """TaskGroup.spawn_app with a Mailbox for the app's events (hypercorn/asyncio/task_group.py, 0.18.0)."""
    events = Mailbox(config.max_app_queue_size)

    def call_soon(func, *args):  # the app's sync-to-async bridge, as hypercorn makes it
        return asyncio.run_coroutine_threadsafe(func(*args), self._loop).result()

    self.spawn(
        task_group._handle, app, config, scope, events.get, send, partial(self._loop.run_in_executor, None), call_soon
    )
    return events.put


class _UpgradedConnection(hypercorn_h11.H11WSConnection):
    """hypercorn's wrapper of an upgraded HTTP/1.1 connection, letting go of h11 once the upgrade is accepted."""

    def send(self, event) -> bytes:
        if self.h11_connection is None:
            raise RuntimeError(f"an HTTP/1.1 event after the websocket upgrade: {type(event).__name__}")
        data = self.h11_connection.send(event)
        if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            self.h11_connection = None  # from here on only websocket frames, which never pass through h11
        return data


_accept_handshake = ws_stream.Handshake.accept


def _accept_uncompressed(self: ws_stream.Handshake, subprotocol, additional_headers):
    """Handshake.accept as if the client had offered no extension: permessage-deflate is declined."""
    self.extensions = None
    return _accept_handshake(self, subprotocol, additional_headers)


_app_send = ws_stream.WSStream.app_send
_SERVER_FRAMES = FrameProtocol(client=False, extensions=[])  # keeps no state between whole messages


def _framed(message: TextMessage) -> bytes:
    """The message's frame, made the first time any socket sends it."""
    if message.frame is None:
        message.frame = bytes(_SERVER_FRAMES.send_data(message["text"]))
    return message.frame


def _open_over_http1(stream: ws_stream.WSStream) -> hypercorn_h11.H11Protocol | None:
    """The HTTP/1.1 protocol below an accepted websocket that can still take frames; None otherwise (over HTTP/2 a
    frame is an h2 DATA frame; once a close is under way wsproto refuses frames, and hypercorn drops them)."""
    protocol = stream.send.__self__
    if (
        stream.closed
        or stream.state is not ws_stream.ASGIWebsocketState.CONNECTED
        or stream.connection.state is not ConnectionState.OPEN
        or not isinstance(protocol, hypercorn_h11.H11Protocol)
    ):
        return None
    return protocol


async def _app_send_framed_once(self: ws_stream.WSStream, message) -> None:
    """WSStream.app_send, with a TextMessage's frame made once for all sockets and written as hypercorn would."""
    protocol = _open_over_http1(self) if type(message) is TextMessage else None
    if protocol is None:
        await _app_send(self, message)
    else:
        await protocol.send(RawData(data=_framed(message)))  # what H11Protocol.stream_send does with it


def write_now(send, message: TextMessage) -> bool:
    """Write a TextMessage's frame on the websocket whose ASGI send is `send` at once, without waiting, if its
    connection can take it so (HTTP/1.1 under hypercorn, the socket accepted and open, nothing being written through
    hypercorn, nothing waiting in the transport's buffer), and say whether it did: the same bytes, and what
    protocol_send does short of its lock and drain, which would not wait then. Always False under another server
    (Quart's test client) or over HTTP/2. Whoever calls it keeps the socket's frames in order
    (blueprints/realtime.py). Found from `send` at each call: an idle socket keeps nothing more for it."""
    stream = getattr(send, "__self__", None)
    protocol = _open_over_http1(stream) if isinstance(stream, ws_stream.WSStream) else None
    if protocol is None:
        return False
    server = protocol.send.__self__  # hypercorn's TCPServer: its writer, and the lock its sends take
    transport = server.writer.transport
    if server.send_lock.locked() or transport.is_closing() or transport.get_write_buffer_size():
        return False  # a frame on its way, or a client that is not reading: hypercorn's path waits for it
    transport.write(_framed(message))
    return True


class LazyEvent:
    """hypercorn's event (worker_context.EventWrapper's methods), with no asyncio.Event until one is awaited.
    `on_set`: called when it is set (the worker's `terminated` closes its idle connections through it)."""

    __slots__ = ("_set", "_event", "on_set")

    def __init__(self) -> None:
        self._set = False
        self._event: asyncio.Event | None = None
        self.on_set: Callable[[], None] | None = None

    async def clear(self) -> None:
        self._set = False
        if self._event is not None:
            self._event.clear()

    async def wait(self) -> None:
        if self._set:
            return
        if self._event is None:
            self._event = asyncio.Event()
        await self._event.wait()

    async def set(self) -> None:
        self._set = True
        if self._event is not None:
            self._event.set()
        if self.on_set is not None:
            self.on_set()

    def is_set(self) -> bool:
        return self._set


class KeepAliveTimer:
    """TCPServer's `idle_task` (AsyncioSingleTask, running TCPServer._idle_timeout) as one timer handle: `restart`
    when the connection goes idle, `stop` when a request arrives or the connection ends (hypercorn's calls)."""

    __slots__ = ("_server", "_handle")

    def __init__(self) -> None:
        self._server: tcp_server.TCPServer | None = None
        self._handle: asyncio.TimerHandle | None = None

    async def restart(self, task_group, action) -> None:
        self._disarm()
        server = self._server = action.__self__  # action: the TCPServer's _idle_timeout
        if server.context.terminated.is_set():  # _idle_timeout's wait would end at once
            self.expire()
            return
        self._handle = server.loop.call_later(server.config.keep_alive_timeout, self.expire)
        _idle_connections(server.context).add(self)

    async def stop(self) -> None:
        self._disarm()

    def _disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
            _idle_connections(self._server.context).discard(self)

    def expire(self) -> None:
        """Close the idle connection, as _idle_timeout does once its wait is over."""
        self._disarm()
        closing = self._server.loop.create_task(self._server._initiate_server_close())
        _CLOSING.add(closing)  # a task the loop alone refers to may be collected before it ends
        closing.add_done_callback(_CLOSING.discard)


_CLOSING: set[asyncio.Task] = set()


def _idle_connections(context: worker_context.WorkerContext) -> set[KeepAliveTimer]:
    """The worker's idle connections' timers; its `terminated` expires them all (install() makes it a LazyEvent)."""
    idle = context.__dict__.get("idle_connections")
    if idle is None:
        idle = context.idle_connections = set()
        context.terminated.on_set = lambda: [timer.expire() for timer in list(idle)]
    return idle


_date_second: tuple[int, str] = (-1, "")


def _http_date(timestamp: float) -> str:
    """format_date_time, for hypercorn's Date header: formatted once a second (hypercorn/config.py, 0.18.0)."""
    global _date_second
    second = int(timestamp)
    if _date_second[0] != second:
        _date_second = (second, format_date_time(second))
    return _date_second[1]


_normalize_and_validate = h11_headers.normalize_and_validate
_FIELD_NAME, _FIELD_VALUE = h11_headers._field_name_re, h11_headers._field_value_re
_VALID_PAIRS: set[tuple[bytes, bytes]] = set()
VALID_PAIRS_KEPT = 1024  # the same few pairs come back on every answer; unique ones (request ids) make it refill


def _normalize_and_validate_once(headers, _parsed: bool = False) -> h11_headers.Headers:
    """h11's normalize_and_validate, each (name, value) pair checked against HTTP's grammar once rather than every
    time (h11/_headers.py, 0.16.0): what follows the check (lower-cased names, Content-Length and
    Transfer-Encoding's rules) is h11's own, run on every call."""
    if not _parsed:
        checked = []
        for pair in headers:
            if type(pair) is not tuple or pair not in _VALID_PAIRS:  # hypercorn's are tuples of bytes: known at once
                pair = (h11_headers.bytesify(pair[0]), h11_headers.bytesify(pair[1]))
                if pair not in _VALID_PAIRS:
                    if _FIELD_NAME.fullmatch(pair[0]) is None or _FIELD_VALUE.fullmatch(pair[1]) is None:
                        return _normalize_and_validate(headers)  # raises h11's LocalProtocolError, with its message
                    if len(_VALID_PAIRS) >= VALID_PAIRS_KEPT:
                        _VALID_PAIRS.clear()
                    _VALID_PAIRS.add(pair)
            checked.append(pair)
        headers = checked
    return _normalize_and_validate(headers, _parsed=True)


def install() -> None:
    for package, written_for in (("hypercorn", HYPERCORN_VERSION), ("h11", H11_VERSION)):
        installed = version(package)
        if installed != written_for:
            raise RuntimeError(f"chat.lean_hypercorn was written for {package} {written_for}, not {installed}")
    task_group.TaskGroup.spawn_app = _spawn_app
    hypercorn_h11.H11WSConnection = _UpgradedConnection
    ws_stream.Handshake.accept = _accept_uncompressed
    worker_context.WorkerContext.event_class = LazyEvent
    ws_stream.WSStream.app_send = _app_send_framed_once
    tcp_server.AsyncioSingleTask = KeepAliveTimer
    hypercorn_config.format_date_time = _http_date
    h11_events.normalize_and_validate = _normalize_and_validate_once
