"""Quart's ASGI websocket connection, with its incoming side bounded and its end made to release hypercorn.

Three upstream behaviours (Quart 0.22, hypercorn 0.18) that a hostile client can turn against the server, each
reproduced by tests/system/test_hostile_websocket.py, and one that a plain disconnect can meet:

1. Quart moves every incoming frame from hypercorn into an unbounded asyncio.Queue as fast as it arrives, so a
   client that sends faster than the handler reads grows the server's memory without limit. Here the queue
   holds at most `INBOUND_FRAMES` frames. When it is full the receiver stops taking frames from hypercorn,
   whose own queue (`max_app_queue_size`, 10) fills in turn, and hypercorn stops reading the socket: TCP flow
   control then holds the client back. A frame over `MAX_QUEUED_FRAME_BYTES` is queued as `OVERSIZED` (the
   handler answers `frame_too_large`), so what waits for one socket is bounded in bytes too.
2. When the handler ends first (the server closed the socket: overflow, logout, shutdown), Quart cancels its
   receiver and nobody takes events from hypercorn any more. A client that keeps sending then fills
   hypercorn's queue, and hypercorn blocks in `app_put` for ever - both in its reading loop and when it hands
   the app the final `websocket.disconnect` - so the TCP connection is never closed (it sits in CLOSE-WAIT once
   the client gives up) and its task is still there at shutdown. Here a drainer keeps taking (and dropping)
   events until hypercorn reports the disconnect, for at most `DRAIN_SECONDS`.
3. hypercorn closes the TCP connection as soon as the app returns, without waiting for the client's answer to
   the close frame: a client still sending then makes the server's kernel reset the connection, and the reset
   destroys the close frame (and its code) before the client reads it. Here the app waits for the answer (the
   disconnect), for at most `CLOSE_HANDSHAKE_SECONDS`, before it returns.

4. The handler is told the client went in two ways: Quart cancels it, and the inbox is closed. A cancellation
   can be lost: one that lands as a Tortoise query on asyncpg completes is now and then swallowed below us
   (Python 3.11; seen in CI, where a channel socket whose client had left lived on until the server stopped, and
   its user stayed online for everyone). The handler's loop ends on the closed inbox all the same
   (tests/unit/blueprints/test_realtime.py).

And three things a socket does not need, at 10 000 idle sockets on a worker (docs/performance.md, "Lean sockets"):
the incoming frames wait in a plain `Mailbox` (no asyncio.Queue), which the websocket exposes as `inbox`;
`send_event` hands hypercorn a message built once for every socket that sends the same event (broker.Event) (Quart's
`websocket.send` builds a dict per socket and yields to the loop once more before sending); and once the socket is
accepted, the handshake's headers are let go of (`_forget_handshake`).
"""

from __future__ import annotations

import asyncio
import contextlib

from quart.asgi import ASGIWebsocketConnection
from quart.utils import cancel_tasks, raise_task_exceptions
from quart.wrappers import Websocket
from werkzeug.datastructures import EnvironHeaders

from .mailbox import Mailbox

INBOUND_FRAMES = 16  # frames read from the socket but not yet handled, per socket
MAX_QUEUED_FRAME_BYTES = 64 * 1024  # a frame past this is never kept: the handler refuses it anyway
CLOSE_HANDSHAKE_SECONDS = 2.0  # a client that does not answer the close frame by then is not waited for
DRAIN_SECONDS = 10.0  # hypercorn reports the disconnect right after the app returns; this is only a backstop
OVERSIZED = object()  # queued in place of a frame too large to keep
NO_HEADERS = EnvironHeaders({})  # an accepted socket's headers: empty, read-only, one for all

_drainers: set[asyncio.Task] = set()  # strong references: a task nobody holds may be collected mid-way


class BoundedWebsocketConnection(ASGIWebsocketConnection):
    def __init__(self, app, scope) -> None:
        super().__init__(app, scope)
        self.queue = Mailbox(INBOUND_FRAMES)

    def _create_websocket_from_scope(self, send) -> Websocket:
        websocket = super()._create_websocket_from_scope(send)
        websocket.inbox = self.queue  # the frames read and not yet handled: blueprints/realtime.py waits on them
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
        websocket = self._create_websocket_from_scope(send)
        receiver = asyncio.ensure_future(self.handle_messages(receive))
        handler = asyncio.ensure_future(self.handle_websocket(websocket, send))
        try:
            done, pending = await asyncio.wait([handler, receiver], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await cancel_tasks({handler, receiver})
            raise
        if receiver in pending:
            # the app is done with the socket; hypercorn is not until it has handed over the disconnect
            receiver.cancel()
            drainer = asyncio.ensure_future(_drain(receive))
            _drainers.add(drainer)
            drainer.add_done_callback(_drainers.discard)
            await asyncio.wait({drainer}, timeout=CLOSE_HANDSHAKE_SECONDS)
        await cancel_tasks(pending)
        raise_task_exceptions(done)

    async def handle_messages(self, receive) -> None:
        while True:
            event = await receive()
            if event["type"] == "websocket.receive":
                # not `bytes or text`: an empty binary frame (b"", text None) is binary, not the text ""
                message = event["bytes"] if event.get("bytes") is not None else event.get("text") or ""
                if len(message) > MAX_QUEUED_FRAME_BYTES:
                    message = OVERSIZED
                await self.queue.put(message)  # waits while the handler is behind: backpressure, not memory
            elif event["type"] == "websocket.disconnect":
                self.queue.close()  # the handler ends on it, should the cancellation that follows be lost
                return


async def _drain(receive) -> None:
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
        async with asyncio.timeout(DRAIN_SECONDS):
            while (await receive())["type"] != "websocket.disconnect":
                pass
