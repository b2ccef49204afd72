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
"""

from __future__ import annotations

import asyncio

from quart.asgi import ASGIHTTPConnection
from quart.wrappers.request import Body

UPLOAD_PATH = "/files"


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


class BoundedHTTPConnection(ASGIHTTPConnection):
    def _is_upload(self) -> bool:
        return self.scope["method"] == "POST" and self.scope["path"] == UPLOAD_PATH

    def _create_request_from_scope(self, send):
        request = super()._create_request_from_scope(send)
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
