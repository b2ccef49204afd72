"""Files and images (API.md "Files", docs/files.md): upload streamed to the files store, images measured,
thumbnailed and stripped of their metadata off the event loop, files attached to messages, served to the room's
members only, removed with their message or after a day unsent.

The bytes live in the store (`file_store.FileStore`: a folder or S3), the rest in the files table; a row is written
only once its bytes are stored, so a crash mid-upload leaves no row, only a temporary file the sweep removes.
"""

# ruff: noqa: S608 - the SQL here interpolates parameter markers only ($ or ?), never a value

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import re
import secrets
import tempfile
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from tortoise.connection import get_connection
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import NEED_DATA, Data, Epilogue, File, MultipartDecoder

from .db import param, params
from .errors import APIError
from .file_store import FileStore, open_store
from .models import FILE_FIELDS, FileJSON, MessageJSON, file_json, utcnow
from .models import File as FileRow
from .rooms import admission
from .state import state

log = logging.getLogger(__name__)

MAX_NAME = 200  # characters of a file's name, its extension kept
MULTIPART_OVERHEAD = 64 * 1024  # what a request may carry beyond the file: boundaries, part headers, small fields
DECODER_PIECE = 16 * 1024  # bytes handed to the multipart decoder at once
BODY_BUFFER = 128 * 1024  # bytes of an upload's body read from the socket but not yet written (asgi_http.py)
THUMBNAIL_PIXELS = 320  # the longer side of a thumbnail
SNIFF_BYTES = 64
# images served inline: what their first bytes say, then Pillow's format when it opens them
IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)
# what makes a file HTML, SVG or script to a browser that sniffs: an image holding any of these is a polyglot,
# and is served as an attachment like any other file
_ACTIVE = re.compile(
    rb"<(?:!doctype|html|head|body|script|svg|iframe|object|embed|meta|link|style|img|a\s|\?xml|x:)|javascript:"
)
_ACTIVE_TAIL = 16  # bytes kept from one chunk to the next, so that a marker across two chunks is seen


def file_not_found() -> APIError:
    return APIError(404, "file_not_found", "No such file, or not one you can see.")


def file_too_large(limit: int) -> APIError:
    return APIError(413, "file_too_large", f"A file may have at most {limit} bytes.")


def sanitize_name(name: str | None) -> str:
    """A file's name as kept and served: its last path segment, without control or format characters, without
    leading dots, at most MAX_NAME characters (the extension kept); "file" when nothing is left."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(char for char in name if unicodedata.category(char)[0] not in "CZ" or char == " ")
    name = name.strip().lstrip(".").strip()
    if len(name) > MAX_NAME:
        stem, dot, extension = name.rpartition(".")
        extension = extension[:20] if dot else ""
        name = (stem if dot else name)[: MAX_NAME - len(extension) - 1].rstrip() + (f".{extension}" if dot else "")
    if name == "thumb":  # /files/<id>/thumb is the thumbnail's address
        name = "thumb_"
    return name or "file"


def store(app_state=None) -> FileStore:
    """The application's files store (CHAT_FILES_URL), opened on first use."""
    app_state = app_state or state()
    if app_state.file_store is None:
        app_state.file_store = open_store(app_state.settings.resolved_files_url, app_state.settings)
    return app_state.file_store


def new_key() -> str:
    token = secrets.token_hex(16)
    return f"{token[:2]}/{token}"


# ---------------------------------------------------------------- upload


@dataclass
class _Sniffed:
    head: bytes = b""
    active: bool = False  # HTML / SVG / script markers somewhere in the bytes
    tail: bytes = b""


class _UploadBody:
    """The one file part of a multipart body, read as it arrives: its bytes counted against the limit, the first
    ones kept to sniff the type, an image's scanned for markup."""

    def __init__(self, chunks: AsyncIterator[bytes], boundary: bytes, limit: int, limit_error: APIError) -> None:
        self._chunks = chunks.__aiter__()
        self._decoder = MultipartDecoder(boundary, max_form_memory_size=MULTIPART_OVERHEAD, max_parts=16)
        self._limit = limit
        self._limit_error = limit_error
        self.size = 0
        self.sniffed = _Sniffed()
        self.filename = ""
        self._pending: memoryview | None = memoryview(b"")  # read from the body, not yet given to the decoder

    async def _event(self):
        while True:
            event = self._decoder.next_event()
            if event is not NEED_DATA:
                return event
            if not self._pending:
                try:
                    self._pending = memoryview(await self._chunks.__anext__())
                except StopAsyncIteration:
                    self._pending = None
                except RequestEntityTooLarge:  # the body is longer than the limit and its framing (asgi_http.py)
                    raise self._limit_error from None
            # the decoder refuses more than MULTIPART_OVERHEAD held at once: it gets the body a piece at a time
            piece = None if self._pending is None else self._pending[:DECODER_PIECE]
            self._pending = None if piece is None else self._pending[DECODER_PIECE:]
            try:
                self._decoder.receive_data(piece)
            except RequestEntityTooLarge:  # part headers past MULTIPART_OVERHEAD
                raise self._limit_error from None

    async def start(self) -> None:
        """Read up to the file part's headers: 400 when the body has none named `file`."""
        try:
            while True:
                event = await self._event()
                if isinstance(event, File) and event.name == "file":
                    self.filename = event.filename
                    return
                if isinstance(event, Epilogue):
                    break
        except (ValueError, LookupError):
            pass
        raise APIError(400, "validation_error", "The body must be multipart/form-data with a part named file.")

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            while True:
                event = await self._event()
                if not isinstance(event, Data):
                    raise ValueError("unexpected part")
                if event.data:
                    self.size += len(event.data)
                    if self.size > self._limit:
                        raise self._limit_error
                    self._sniff(event.data)
                    yield event.data
                if not event.more_data:
                    return
        except ValueError:
            raise APIError(400, "validation_error", "The multipart body ends before its file does.") from None

    def _sniff(self, data: bytes) -> None:
        sniffed = self.sniffed
        if len(sniffed.head) < SNIFF_BYTES:
            sniffed.head += data[: SNIFF_BYTES - len(sniffed.head)]
        if sniffed.active or _magic_type(sniffed.head) is None:
            return
        window = sniffed.tail + data[:4096] if len(data) > 4096 else sniffed.tail + data
        if _ACTIVE.search(window.lower()) or (len(data) > 4096 and _ACTIVE.search(data.lower())):
            sniffed.active = True
        sniffed.tail = data[-_ACTIVE_TAIL:]


def _magic_type(head: bytes) -> str | None:
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def _plain_type(head: bytes) -> str:
    """The type of a file that is not served inline (it is a download whatever it says)."""
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"PK\x03\x04"):
        return "application/zip"
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 3:  # not just a character cut at the end of the sample
                return "application/octet-stream"
        return "text/plain"
    return "application/octet-stream"


async def upload(me: int, room_name: str, content_type: str, body: AsyncIterator[bytes]) -> FileJSON:
    """POST /files: store the body's file part for the room, once complete; its row, as JSON."""
    settings = state().settings
    admitted = await admission(me, room_name)
    if admitted.archived:
        raise APIError(409, "room_archived", "This channel is archived: it is read-only.")
    mimetype, options = parse_options_header(content_type)
    boundary = options.get("boundary", "")
    if mimetype != "multipart/form-data" or not boundary or not boundary.isascii():
        raise APIError(400, "validation_error", "The body must be multipart/form-data with a part named file.")
    await _check_quota(me)
    unsent = await unsent_bytes(me)
    room_left = settings.unsent_upload_bytes - unsent
    limit = min(settings.max_upload_bytes, room_left)
    error = (
        file_too_large(settings.max_upload_bytes)
        if limit == settings.max_upload_bytes
        else APIError(
            413,
            "upload_quota_exceeded",
            f"Your files not yet sent hold {unsent} bytes; at most {settings.unsent_upload_bytes} may wait to be sent.",
        )
    )
    if limit <= 0:
        raise error
    parsed = _UploadBody(body, boundary.encode(), limit, error)
    await parsed.start()
    name = sanitize_name(parsed.filename)
    key = new_key()
    files = store()
    size = await files.write(key, parsed.chunks())
    written = [key]  # what to delete if anything below fails: no bytes without a row
    try:
        details = await _examine(files, key, parsed.sniffed, settings.image_max_pixels, written)
        row = await FileRow.create(
            uploader_id=me,
            room=admitted.room.name,
            name=name,
            content_type=details.content_type,
            size=details.size if details.size is not None else size,
            key=details.key or key,
            width=details.width,
            height=details.height,
            thumb_key=details.thumb_key,
        )
    except BaseException:
        for stale in written:
            with contextlib.suppress(Exception):
                await files.delete(stale)
        raise
    return file_json(*(getattr(row, field) for field in FILE_FIELDS))


async def _check_quota(me: int) -> None:
    app_state = state()
    settings = app_state.settings
    key = f"upload:{me}"
    wait = await app_state.throttle.take(key, settings.upload_limit, settings.upload_window_seconds)
    if wait:
        raise APIError(
            429, "too_many_uploads", f"You are uploading too fast; wait {wait} seconds.", {"Retry-After": str(wait)}
        )


async def unsent_bytes(me: int) -> int:
    sql = f"SELECT COALESCE(SUM(size), 0) FROM files WHERE uploader_id = {param(1)} AND message_id IS NULL"
    _, rows = await get_connection("default").execute_query(sql, [me])
    return int(rows[0][0])


# ---------------------------------------------------------------- images


@dataclass
class _Details:
    content_type: str
    key: str | None = None  # where the served bytes are, when they were rewritten (metadata stripped)
    size: int | None = None
    width: int | None = None
    height: int | None = None
    thumb_key: str | None = None


async def _examine(files: FileStore, key: str, sniffed: _Sniffed, max_pixels: int, written: list[str]) -> _Details:
    """What the stored bytes are. An image (its first bytes say so, Pillow opens it as that format, no markup in
    it, at most max_pixels) gets its dimensions, a thumbnail, and its metadata stripped; anything else is a file
    to download."""
    kind = _magic_type(sniffed.head)
    if kind is None or sniffed.active:
        return _Details(_plain_type(sniffed.head) if kind is None else "application/octet-stream")
    with tempfile.TemporaryFile() as spool:  # on disk: Pillow seeks, and an image may be large
        async for chunk in files.read(key):
            await asyncio.to_thread(spool.write, chunk)
        result = await asyncio.to_thread(_process_image, spool, kind, max_pixels)
    if result is None:
        return _Details("application/octet-stream")
    width, height, stripped, thumbnail = result
    details = _Details(IMAGE_TYPES[kind], width=width, height=height)
    if stripped is not None:
        details.key = new_key()
        written.append(details.key)
        details.size = await files.write(details.key, _once(stripped))
        await files.delete(key)
    if thumbnail is not None:
        details.thumb_key = f"{details.key or key}.thumb"
        written.append(details.thumb_key)
        await files.write(details.thumb_key, _once(thumbnail))
    return details


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _process_image(spool, kind: str, max_pixels: int) -> tuple[int, int, bytes | None, bytes | None] | None:
    """In a thread: (width, height, the image without its metadata or None when it had none, a thumbnail), or
    None when the bytes are not an image of that format Pillow can read, or one too large (a decompression bomb)."""
    from PIL import Image

    try:
        spool.seek(0)
        with Image.open(spool, formats=[kind]) as image:
            width, height = image.size
            if width * height > max_pixels or width <= 0 or height <= 0:
                return None
            image.load()
            stripped = _without_metadata(image, kind)
            thumbnail = _thumbnail(image)
            return width, height, stripped, thumbnail
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError):
        return None


def _without_metadata(image, kind: str) -> bytes | None:
    """The image re-encoded without EXIF (GPS included), XMP and comments, when it has any; None otherwise.

    Re-encoding (not cutting segments) is what Pillow does reliably for all four formats; a JPEG is saved at
    quality 95 with its orientation applied, so that it still shows upright without its EXIF."""
    from PIL import ImageOps

    info = image.info
    textual = kind == "PNG" and any(isinstance(value, str) for value in info.values())  # tEXt, iTXt chunks
    if not (info.get("exif") or info.get("xmp") or info.get("XML:com.adobe.xmp") or info.get("comment") or textual):
        return None
    out = io.BytesIO()
    if kind == "JPEG":
        ImageOps.exif_transpose(image).save(out, "JPEG", quality=95)
    elif kind == "WEBP" and getattr(image, "n_frames", 1) > 1:
        image.save(out, "WEBP", save_all=True, lossless=True)
    elif kind == "WEBP":
        image.save(out, "WEBP", lossless=True)
    elif kind == "GIF":
        image.save(out, "GIF", save_all=getattr(image, "n_frames", 1) > 1)
    else:
        image.save(out, "PNG")
    return out.getvalue()


def _thumbnail(image) -> bytes | None:
    from PIL import ImageOps

    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    small = ImageOps.exif_transpose(image.copy())
    small.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
    if small.mode not in ("RGB", "RGBA"):
        small = small.convert("RGBA")
    out = io.BytesIO()
    small.save(out, "WEBP", quality=80)
    return out.getvalue()


# ---------------------------------------------------------------- read


@dataclass(frozen=True)
class Served:
    name: str
    content_type: str
    inline: bool
    size: int
    key: str
    etag: str


async def served(me: int, file_id: int, name: str) -> Served:
    """The file GET /files/<id>/<name> serves: 404 unless the caller is a member of its room (an unsent file:
    unless they uploaded it) and the name is its name."""
    row = await _readable(me, file_id)
    if name == "thumb":
        if not row.thumb_key:
            raise file_not_found()
        size = await store().size(row.thumb_key)
        if size is None:
            raise file_not_found()
        return Served(f"{Path(row.name).stem}.webp", "image/webp", True, size, row.thumb_key, _etag(row.thumb_key))
    if name != row.name:
        raise file_not_found()
    inline = row.content_type in IMAGE_TYPES.values()
    return Served(row.name, row.content_type, inline, int(row.size), row.key, _etag(row.key))


async def _readable(me: int, file_id: int) -> FileRow:
    row = await FileRow.get_or_none(id=file_id)
    if row is None or (row.message_id is None and row.uploader_id != me):
        raise file_not_found()
    try:
        await admission(me, row.room)
    except APIError:
        raise file_not_found() from None
    return row


def _etag(key: str) -> str:
    # a key's bytes never change (a rewrite is a new key): the key names the content
    return '"' + hashlib.blake2b(key.encode(), digest_size=12).hexdigest() + '"'


# ---------------------------------------------------------------- messages


async def check_attachable(me: int, room_name: str, file_ids: list[int]) -> None:
    """400 unless each file was uploaded by the caller into this room and is not attached to a message yet."""
    if not file_ids:
        return
    markers = ", ".join(param(number) for number in range(3, len(file_ids) + 3))
    sql = (
        f"SELECT id FROM files WHERE uploader_id = {param(1)} AND room = {param(2)} AND message_id IS NULL"
        f" AND id IN ({markers})"
    )
    _, rows = await get_connection("default").execute_query(sql, [me, room_name, *file_ids])
    found = {row[0] for row in rows}
    missing = [file_id for file_id in file_ids if file_id not in found]
    if missing:
        raise APIError(
            400,
            "validation_error",
            "file_ids: each file must be one you uploaded into this room and not sent yet.",
        )


async def attach(connection, mark: str, message_id: int, sender_id: int, room: str, file_ids: list[int]) -> list:
    """In the message's transaction: the files become the message's (those still unsent); their JSON, in the
    order of file_ids."""
    if not file_ids:
        return []
    markers = ", ".join(f"{mark}{number}" for number in range(4, len(file_ids) + 4))
    rows = await connection.execute_query_dict(
        f"UPDATE files SET message_id = {mark}1 WHERE uploader_id = {mark}2 AND room = {mark}3"
        f" AND message_id IS NULL AND id IN ({markers}) RETURNING {', '.join(FILE_FIELDS)}",
        [message_id, sender_id, room, *file_ids],
    )
    by_id = {row["id"]: file_json(*(row[name] for name in FILE_FIELDS)) for row in rows}
    return [by_id[file_id] for file_id in sorted(by_id)]  # as with_files reads them: in upload order


async def with_files(messages: list[MessageJSON], connection=None) -> list[MessageJSON]:
    """Fill in each message's files: one query for the lot."""
    by_id = {message["id"]: message for message in messages}
    if not by_id:
        return messages
    markers = params(1, len(by_id))
    sql = f"SELECT message_id, {', '.join(FILE_FIELDS)} FROM files WHERE message_id IN ({markers}) ORDER BY id"
    _, rows = await (connection or get_connection("default")).execute_query(sql, list(by_id))
    for row in rows:
        by_id[row[0]]["files"].append(file_json(*row[1:]))
    return messages


async def detach_for_delete(connection, mark: str, message_id: int) -> list[str]:
    """In a message delete's transaction: its files' rows go; the keys whose bytes to delete after the commit."""
    rows = await connection.execute_query_dict(
        f"DELETE FROM files WHERE message_id = {mark}1 RETURNING key, thumb_key", [message_id]
    )
    return [key for row in rows for key in (row["key"], row["thumb_key"]) if key]


async def forget_uploads(connection, user_id: int, sent_too: bool) -> list[str]:
    """In an account deletion's transaction: the user's files never sent go, and with `sent_too` (their content is
    removed: CHAT_DELETED_USER_CONTENT=remove) the ones they sent as well; the keys to delete after the commit."""
    condition = "" if sent_too else " AND message_id IS NULL"
    rows = await connection.execute_query_dict(
        f"DELETE FROM files WHERE uploader_id = {param(1)}{condition} RETURNING key, thumb_key", [user_id]
    )
    return [key for row in rows for key in (row["key"], row["thumb_key"]) if key]


async def delete_bytes(keys: list[str], app_state=None) -> None:
    """Delete stored bytes whose rows are gone (after the commit): a failure is logged, the sweep is not needed
    since no row names them any more."""
    files = store(app_state)
    for key in keys:
        try:
            await files.delete(key)
        except Exception:
            log.exception("deleting stored file %s failed", key)


# ---------------------------------------------------------------- sweeping


SWEEP_EVERY_SECONDS = 600.0


async def sweep_unsent(older_than: timedelta, app_state=None) -> int:
    """Remove the files never attached for `older_than`: each row is deleted by one statement that returns it, so
    when several workers sweep at once each file is removed by exactly one of them."""
    cutoff = utcnow() - older_than
    rows = await get_connection("default").execute_query_dict(
        f"DELETE FROM files WHERE message_id IS NULL AND created_at < {param(1)} RETURNING key, thumb_key", [cutoff]
    )
    await delete_bytes([key for row in rows for key in (row["key"], row["thumb_key"]) if key], app_state)
    return len(rows)


async def sweep(app_state) -> None:
    """One round: the uploads left unfinished by a crash, then the files never sent."""
    settings = app_state.settings
    files = store(app_state)
    incomplete = await files.sweep_incomplete(settings.upload_stale_seconds)
    unsent = await sweep_unsent(timedelta(seconds=settings.unsent_file_seconds), app_state)
    if incomplete or unsent:
        log.info("files sweep: %d unfinished uploads, %d unsent files removed", incomplete, unsent)


async def sweep_forever(app_state, every: float = SWEEP_EVERY_SECONDS) -> None:
    while True:
        try:
            await sweep(app_state)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("files sweep failed")
        await asyncio.sleep(every)
