"""Quart's ASGI websocket connection, with its incoming side bounded, its end made to release hypercorn, and no task
of its own: the handler runs in the task hypercorn started for the app and reads the client's events itself.

Three upstream behaviours (Quart 0.22, hypercorn 0.18) that a hostile client can turn against the server, each
reproduced by tests/system/test_hostile_websocket.py, and one that a plain disconnect can meet:

1. Quart moves every incoming frame from hypercorn into an unbounded asyncio.Queue as fast as it arrives, in a
   receiver task, so a client that sends faster than the handler reads grows the server's memory without limit.
   Here there is no second queue: the handler takes the client's events from hypercorn's own app queue, which
   lean_hypercorn makes a `Mailbox` of `max_app_queue_size` (10) events, exposed as `websocket.inbox` and read
   with `take_frame`. When it is full hypercorn stops reading the socket: TCP flow control then holds the client
   back. A frame over `MAX_FRAME_BYTES` is taken as `OVERSIZED` (the handler answers `frame_too_large`).
2. When the handler ends first (the server closed the socket: overflow, logout, shutdown), nobody takes events
   from hypercorn any more. A client that keeps sending then fills hypercorn's queue, and hypercorn blocks in
   `app_put` for ever - both in its reading loop and when it hands the app the final `websocket.disconnect` - so
   the TCP connection is never closed (it sits in CLOSE-WAIT once the client gives up) and its task is still
   there at shutdown. Here a drainer keeps taking (and dropping) events until hypercorn reports the disconnect,
   for at most `DRAIN_SECONDS`.
3. hypercorn closes the TCP connection as soon as the app returns, without waiting for the client's answer to
   the close frame: a client still sending then makes the server's kernel reset the connection, and the reset
   destroys the close frame (and its code) before the client reads it. Here the app waits for the answer (the
   disconnect), for at most `CLOSE_HANDSHAKE_SECONDS`, before it returns.
4. Quart tells its handler that the client went by cancelling it, and a cancellation can be lost: one that lands
   as a Tortoise query on asyncpg completes is now and then swallowed below us (Python 3.11; seen in CI, where a
   channel socket whose client had left lived on until the server stopped, and its user stayed online for
   everyone). Here nothing is cancelled: the disconnect is the last of the socket's events, which the handler's
   loop takes in turn (tests/unit/blueprints/test_realtime.py), and a long replay looks for it between batches
   (`client_gone`).

And what a socket does not need, at 10 000 idle sockets on a worker (docs/performance.md, "Lean sockets"): Quart's
two tasks per socket (its receiver, and the handler's own: the app's task runs the handler) and its queue;
`send_event` hands hypercorn a message built once for every socket that sends the same event (broker.Event) (Quart's
`websocket.send` builds a dict per socket and yields to the loop once more before sending); and once the socket is
accepted, the handshake's headers are let go of (`_forget_handshake`).

Under a server other than hypercorn with lean_hypercorn (Quart's test client), `receive` is no Mailbox's: a pump
task then moves the events into one, and everything else is the same.
"""

from __future__ import annotations

import asyncio
import contextlib

from quart.asgi import ASGIWebsocketConnection
from quart.wrappers import Websocket
from werkzeug.datastructures import EnvironHeaders

from .mailbox import Mailbox

INBOUND_EVENTS = 10  # events read from the socket but not yet handled, per socket, as hypercorn's max_app_queue_size
MAX_FRAME_BYTES = 64 * 1024  # a frame past this is OVERSIZED: the handler refuses it (frame_too_large)
CLOSE_HANDSHAKE_SECONDS = 2.0  # a client that does not answer the close frame by then is not waited for
DRAIN_SECONDS = 10.0  # hypercorn reports the disconnect right after the app returns; this is only a backstop
OVERSIZED = object()  # taken in place of a frame too large to handle
NO_HEADERS = EnvironHeaders({})  # an accepted socket's headers: empty, read-only, one for all

_drainers: set[asyncio.Task] = set()  # strong references: a task nobody holds may be collected mid-way


class BoundedWebsocketConnection(ASGIWebsocketConnection):
    def __init__(self, app, scope) -> None:
        # not Quart's __init__: its unbounded asyncio.Queue is what this class does without
        self.app, self.scope = app, scope
        self._accepted = self._closed = False
        self.queue: Mailbox | None = None  # the socket's incoming events, set by __call__
        self.websocket: Websocket | None = None

    def _create_websocket_from_scope(self, send) -> Websocket:
        websocket = super()._create_websocket_from_scope(send)
        websocket.inbox = self.queue  # what the client sent and the handler has not taken: take_frame reads it
        websocket.send_event = send  # an ASGI message as is (broker.text_message), once the socket is accepted
        self.websocket = websocket
        return websocket

    async def accept_connection(self, send, headers, subprotocol) -> None:
        await super().accept_connection(send, headers, subprotocol)
        self._forget_handshake()

    def _forget_handshake(self) -> None:
        """Let go of the handshake's headers once the socket is accepted: everything that reads them (the origin and
        host checks, the session cookie, the request id, hypercorn's access log) has run by then, and an open socket
        would otherwise keep them three times over for its whole life (hypercorn's parsed bytes in the scope,
        Quart's decoded copy, the parsed cookies: ~3 KiB a socket, more for a browser's)."""
        self.scope["headers"] = []
        self.websocket.headers = NO_HEADERS
        self.websocket.__dict__.pop("cookies", None)  # werkzeug's cached_property keeps the parsed cookies there

    async def __call__(self, receive, send) -> None:
        """The handler runs in the task that called the app (hypercorn's), and reads the client's events itself."""
        self.queue, pump = _events_of(receive)
        try:
            await self.handle_websocket(self._create_websocket_from_scope(send), send)
            if not self.queue.closed:
                # the app is done with the socket; hypercorn is not until it has handed over the disconnect
                drainer = asyncio.ensure_future(_drain(self.queue, pump))
                _drainers.add(drainer)
                drainer.add_done_callback(_drainers.discard)
                pump = None  # the drainer's now
                await asyncio.wait({drainer}, timeout=CLOSE_HANDSHAKE_SECONDS)
        finally:
            if pump is not None:
                pump.cancel()


def take_frame(inbox: Mailbox) -> str | bytes | object | None:
    """The next thing the client sent, from its socket's events (`inbox`, not empty): the frame's text or bytes,
    OVERSIZED in place of one too large to handle, or None for an event that is no frame: `websocket.connect`, or
    `websocket.disconnect`, which closes the inbox (the client went; nothing follows it)."""
    event = inbox.get_nowait()
    kind = event["type"]
    if kind == "websocket.receive":
        # not `bytes or text`: an empty binary frame (b"", text None) is binary, not the text ""
        frame = event["bytes"] if event.get("bytes") is not None else event.get("text") or ""
        return OVERSIZED if len(frame) > MAX_FRAME_BYTES else frame
    if kind == "websocket.disconnect":
        inbox.close()
    return None


def client_gone(inbox: Mailbox) -> bool:
    """Whether the client went, taken or still waiting behind its last frames (a disconnect is the last event)."""
    if inbox.closed:
        return True
    last = inbox.last()
    return last is not None and last["type"] == "websocket.disconnect"


def _events_of(receive) -> tuple[Mailbox, asyncio.Task | None]:
    """The socket's incoming events as a Mailbox that the handler reads in place: hypercorn's own app queue, which
    lean_hypercorn makes a Mailbox bounded by max_app_queue_size (`receive` is its `get`); under another server
    (Quart's test client), one of INBOUND_EVENTS that a pump task fills from `receive`."""
    events = getattr(receive, "__self__", None)
    if isinstance(events, Mailbox):
        return events, None
    events = Mailbox(INBOUND_EVENTS)
    return events, asyncio.ensure_future(_pump(receive, events))


async def _pump(receive, events: Mailbox) -> None:
    while True:
        event = await receive()
        await events.put(event)  # waits while the handler is behind: backpressure, not memory
        if event["type"] == "websocket.disconnect":
            return


async def _drain(events: Mailbox, pump: asyncio.Task | None) -> None:
    try:
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            async with asyncio.timeout(DRAIN_SECONDS):
                while (await events.get())["type"] != "websocket.disconnect":
                    pass
    finally:
        if pump is not None:
            pump.cancel()
