"""Files over HTTP (chat/files.py): upload one into a room, read one back (ranges, ETag), its thumbnail."""

from __future__ import annotations

import re
from urllib.parse import quote

from quart import Blueprint, Response, request
from quart_schema import validate_querystring

from .. import files
from ..errors import APIError
from ..openapi import documented
from ..schemas import MAX_ID, FileOut, UploadQuery
from ..security import login_required, signed_in

bp = Blueprint("files", __name__)

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@bp.post("/files")
@login_required
@validate_querystring(UploadQuery)
@documented((FileOut, 201), errors=(400, 401, 403, 404, 409, 413, 429, 503), session=True)
async def upload_file(query_args: UploadQuery) -> tuple[dict, int]:
    """Upload one file (multipart/form-data, its part named `file`) into a room; attach it to a message with
    `file_ids` on /send-message. Stored once complete; past CHAT_MAX_UPLOAD_BYTES, 413 file_too_large."""
    me = (await signed_in()).user.id
    try:
        uploaded = await files.upload(me, query_args.room, request.headers.get("Content-Type", ""), request.body)
    except APIError as exc:
        if exc.status == 413 and request.http_version.startswith("1"):
            # the rest of the body is never read: this connection closes, and the client must not reuse it
            exc.headers.setdefault("Connection", "close")
        raise
    return uploaded, 201


@bp.get("/files/<int:file_id>/<name>")
@login_required
@documented(errors=(401, 404, 416), session=True)
async def read_file(file_id: int, name: str) -> Response:
    """The file's bytes, to the members of its room: inline only for PNG, JPEG, GIF and WebP whose bytes are such
    an image, as an attachment otherwise; `/files/<id>/thumb` is an image's thumbnail. ETag, ranges."""
    if file_id > MAX_ID:
        raise files.file_not_found()
    me = (await signed_in()).user.id
    served = await files.served(me, file_id, name)
    headers = {
        "Content-Type": served.content_type
        if served.inline or served.content_type != "text/plain"
        else "text/plain; charset=utf-8",
        "Content-Disposition": content_disposition("inline" if served.inline else "attachment", served.name),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
        "ETag": served.etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-cache",  # revalidated (304): membership may end
    }
    if served.etag in _tags(request.headers.get("If-None-Match", "")):
        return Response(b"", 304, headers)
    start, end, status = 0, served.size, 200
    wanted = request.headers.get("Range")
    if wanted and request.headers.get("If-Range", served.etag) == served.etag:
        picked = byte_range(wanted, served.size)
        if picked is None:
            headers["Content-Range"] = f"bytes */{served.size}"
            return Response(b"", 416, headers)
        if picked:
            start, end, status = *picked, 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{served.size}"
    headers["Content-Length"] = str(end - start)
    response = Response(files.store().read(served.key, start, end), status, headers)
    response.timeout = None  # a large file to a slow client takes its time
    return response


def content_disposition(kind: str, name: str) -> str:
    """RFC 6266: an ASCII fallback and the real name as UTF-8 in filename*."""
    fallback = "".join(char if 32 <= ord(char) < 127 and char not in '"\\%;' else "_" for char in name)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _tags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def byte_range(header: str, size: int) -> tuple[int, int] | tuple[()] | None:
    """A Range header's one byte range as (start, end), end excluded; None when it cannot be satisfied (416); ()
    for what is not a single valid byte range (several ranges, another unit: RFC 9110 lets a server ignore it
    and answer 200 with the whole file)."""
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return ()
    first, last = match.groups()
    if not first and not last:
        return ()
    if not first:  # the last N bytes
        count = int(last)
        if count == 0 or size == 0:
            return None
        return (max(0, size - count), size)
    start = int(first)
    end = size if not last else min(size, int(last) + 1)
    if last and int(last) < start:
        return ()  # invalid: ignored
    if start >= size:
        return None
    return (start, end)
