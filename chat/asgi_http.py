"""Quart's ASGI HTTP connection, with the body of an upload (`POST /files`) bounded in memory.

Quart moves every body chunk from hypercorn into the request's `Body` as fast as it arrives, without waiting for
the handler to take it, and refuses any body over MAX_CONTENT_LENGTH (64 KiB: the JSON API's limit) before the
route is known. For an upload both are wrong: the body may be CHAT_MAX_UPLOAD_BYTES long, and a client faster
than the disk would grow the server's memory by the whole file. So, for `POST /files` only:

- the body's limit is the upload limit plus the multipart framing (`files.MULTIPART_OVERHEAD`); the handler
  counts the file's own bytes and answers `413 file_too_large` at the first byte past the limit;
- the body holds at most `files.BODY_BUFFER` bytes that the handler has not taken: past that the receiver stops
  taking events from hypercorn, whose own queue fills in turn, and hypercorn stops reading the socket (TCP flow
  control holds the client back), as asgi_websocket.py does for frames.

Every other request keeps Quart's behaviour (its body is awaited whole, within 64 KiB).

**A request whose body hypercorn has already queued is handled in hypercorn's app task.** Quart runs every
request as three tasks more: one that moves the body's events into the request and waits for the client to leave,
one that handles the request, and one that bounds the sending of the answer (`asyncio.wait_for`), with
`asyncio.wait` and `gather` to join them. For nearly every request that is all plumbing: hypercorn reads the
request line, headers and body in one read and queues the body's events before the app runs. So when the
receive is lean_hypercorn's Mailbox and the whole body is in it, the body is taken at once and the request is
handled in the task already running; the only event that can still come is the client leaving, and its arrival
cancels the handling, as Quart's receiver would (`_ClientLeaving`). The answer's sending is bounded by
`asyncio.timeout`, which needs no task. A body still on its way, an upload and any other server keep Quart's way.
"""

from __future__ import annotations

import asyncio
from functools import partial
from urllib.parse import urlparse

from quart.asgi import ASGIHTTPConnection, _handle_exception, _normalise_path
from quart.utils import cancel_tasks, raise_task_exceptions
from quart.wrappers import Response
from quart.wrappers.request import Body, Request
from werkzeug.datastructures import Headers, ImmutableHeadersMixin
from werkzeug.exceptions import BadRequestKeyError

from .mailbox import Mailbox

UPLOAD_PATH = "/files"


class RequestHeaders(ImmutableHeadersMixin, Headers):
    """A request's headers, read-only, each name's first value found with one dict look-up.

    werkzeug's Headers finds a name by lower-casing every name it holds, and a name it does not hold costs a
    BadRequestKeyError raised and caught (Content-Length, Origin, X-Request-Id: several per request). A request's
    headers never change once received (werkzeug's own WSGI headers are read-only too), so they are indexed once,
    at the first look-up. Built from the pairs the server parsed, already checked against HTTP's grammar by h11 or
    h2, without checking each value again as Headers.add would.
    """

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._list = pairs
        self._first: dict[str, str] | None = None

    def _index(self) -> dict[str, str]:
        if self._first is None:
            self._first = {}
            for name, value in self._list:
                self._first.setdefault(name.lower(), value)
        return self._first

    def _get_key(self, key: str) -> str:
        try:
            return self._index()[key.lower()]
        except KeyError:
            raise BadRequestKeyError(key) from None

    def get(self, key: str, default=None, type=None):  # noqa: A002 - werkzeug's signature
        value = self._index().get(key.lower(), _MISSING)
        if value is _MISSING:
            return default
        if type is None:
            return value
        try:
            return type(value)
        except ValueError:
            return default

    def __contains__(self, key: str) -> bool:
        return key.lower() in self._index()

    def clear(self) -> None:  # the one change ImmutableHeadersMixin lets through
        raise TypeError(f"{type(self).__name__!r} objects are immutable")

    def copy(self) -> Headers:
        return Headers(self._list)


_MISSING = object()


class StreamedBody(Body):
    """A body read as it arrives, at most `buffer` bytes of it held at once (never awaited whole)."""

    def __init__(self, expected_content_length: int | None, max_content_length: int | None, buffer: int) -> None:
        super().__init__(expected_content_length, max_content_length)
        self._buffer = buffer
        self._taken = asyncio.Event()
        self._taken.set()

    async def __anext__(self) -> bytes:
        data = await super().__anext__()
        self._taken.set()
        return data

    async def room(self) -> None:
        """Wait while the handler has not taken what is held."""
        while len(self._data) >= self._buffer and self._must_raise is None and not self._complete.is_set():
            self._taken.clear()
            await self._taken.wait()


class _ClientLeaving:
    """A Mailbox's listener while its request is handled in hypercorn's app task: the body is whole, so what
    hypercorn puts next is the client leaving, which cancels the handling."""

    __slots__ = ("task", "left")

    def __init__(self, task: asyncio.Task) -> None:
        self.task = task
        self.left = False

    def wake(self) -> None:
        if not self.left:
            self.left = True
            self.task.cancel()


def _take_queued_body(events: Mailbox, request: Request) -> bool | None:
    """Move the body's events hypercorn has already queued into the request: True once the body is whole, False
    while more is to come, None if the client has left."""
    while not events.empty():
        message = events.get_nowait()
        if message["type"] != "http.request":  # http.disconnect
            return None
        request.body.append(message.get("body", b""))
        if not message.get("more_body", False):
            request.body.set_complete()
            return True
    return False


class BoundedHTTPConnection(ASGIHTTPConnection):
    async def __call__(self, receive, send) -> None:
        events = getattr(receive, "__self__", None)
        if type(events) is not Mailbox or self._is_upload():
            await super().__call__(receive, send)
            return
        request = self._create_request_from_scope(send)
        whole = _take_queued_body(events, request)
        if whole is None or (whole and not events.empty()):  # gone before the answer: nothing to answer
            return
        if whole:
            await self._handle_in_this_task(request, events, send)
        else:
            await self._handle_with_receiver(request, receive, send)

    async def _handle_in_this_task(self, request: Request, events: Mailbox, send) -> None:
        task = asyncio.current_task()
        leaving = events.listener = _ClientLeaving(task)
        try:
            await self.handle_request(request, send)
        except asyncio.CancelledError:
            if not leaving.left or task.uncancel() > 0:  # hypercorn's own cancellation goes on
                raise
        finally:
            events.listener = None

    async def _handle_with_receiver(self, request: Request, receive, send) -> None:
        """Quart's way (ASGIHTTPConnection.__call__), for a request already made."""
        receiver_task = asyncio.ensure_future(self.handle_messages(request, receive))
        handler_task = asyncio.ensure_future(self.handle_request(request, send))
        done, pending = await asyncio.wait([handler_task, receiver_task], return_when=asyncio.FIRST_COMPLETED)
        await cancel_tasks(pending)
        raise_task_exceptions(done)

    async def handle_request(self, request: Request, send) -> None:
        """Quart's, with the answer's sending bounded by asyncio.timeout rather than wait_for's task."""
        try:
            response = await self.app.handle_request(request)
        except Exception as error:
            response = await _handle_exception(self.app, error)
        if isinstance(response, Response) and response.timeout != Ellipsis:
            timeout = response.timeout
        else:
            timeout = self.app.config["RESPONSE_TIMEOUT"]
        try:
            async with asyncio.timeout(timeout):
                await self._send_response(send, response)
        except TimeoutError:
            pass

    def _is_upload(self) -> bool:
        return self.scope["method"] == "POST" and self.scope["path"] == UPLOAD_PATH

    def _create_request_from_scope(self, send):
        """Quart's (quart/asgi.py, 0.22), with RequestHeaders, and an upload's body bounded."""
        scope = self.scope
        pairs = [("Remote-Addr", (scope.get("client") or ["<local>"])[0])]
        pairs += [(name.decode("latin1").title(), value.decode("latin1")) for name, value in scope["headers"]]
        if scope["http_version"] < "1.1" and not any(name == "Host" for name, _ in pairs):
            pairs.append(("Host", self.app.config["SERVER_NAME"] or ""))
        path = scope["path"]
        path = path if path[0] == "/" else urlparse(path).path
        root_path = scope.get("root_path", "")
        if root_path != "":
            path = _normalise_path(path, root_path)
        request = self.app.request_class(
            scope["method"],
            scope["scheme"],
            path,
            scope["query_string"],
            RequestHeaders(pairs),
            root_path,
            scope["http_version"],
            max_content_length=self.app.config["MAX_CONTENT_LENGTH"],
            body_timeout=self.app.config["BODY_TIMEOUT"],
            send_push_promise=partial(self._send_push_promise, send),
            scope=scope,
        )
        if self._is_upload():
            from .files import BODY_BUFFER, MULTIPART_OVERHEAD

            settings = self.app.extensions["chat"].settings
            limit = settings.max_upload_bytes + MULTIPART_OVERHEAD
            request.body = StreamedBody(request.content_length, limit, BODY_BUFFER)
            request.body_timeout = None  # a large file on a slow link takes its time; hypercorn's timeouts hold
        return request

    async def handle_messages(self, request, receive) -> None:
        body = request.body
        if not isinstance(body, StreamedBody):
            await super().handle_messages(request, receive)
            return
        while True:
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body.set_complete()
                await body.room()  # backpressure: memory stays bounded whatever the client's speed
            elif message["type"] == "http.disconnect":
                return
