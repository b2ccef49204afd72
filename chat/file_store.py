"""Where uploaded files' bytes are kept: one seam (`FileStore`), like the broker's, with two stores.

`file://PATH` (`LocalStore`, the default: `files/` in the instance folder) and `s3://BUCKET/PREFIX`
(`chat.file_store_s3.S3Store`, for several machines). `open_store` picks one from CHAT_FILES_URL. Keys are opaque
ASCII strings that the files domain makes (`ab/abcdef…`, random hex); a store still refuses a key that could
leave its folder. A write is atomic: visible under its key only once complete; a write that fails or is
cancelled leaves nothing visible, and what a crash left behind is removed by `sweep_incomplete`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from .instance import PRIVATE_FILE, PRIVATE_FOLDER, private_folder

CHUNK = 256 * 1024  # what read() yields at most at once
TEMP_PREFIX = ".tmp-"  # a write in progress (backup.UNFINISHED leaves it out of a copy)
KEY_PATTERN = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")


class FileStore(Protocol):
    async def write(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        """Store the chunks under key atomically: visible only once complete (local: temp name in the same
        folder then os.replace; S3: multipart upload then CompleteMultipartUpload, or one PutObject when small).
        Returns the size. If the iterator raises (e.g. 413 mid-stream, client gone, cancel), nothing is left
        visible (local: temp file removed; S3: AbortMultipartUpload) and the exception propagates."""
        ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes [start, end) (end None = to the end), streamed in chunks of at most 256 KiB."""
        ...

    async def size(self, key: str) -> int | None:  # None when absent
        ...

    async def delete(self, key: str) -> None:  # idempotent
        ...

    async def sweep_incomplete(self, older_than_seconds: float) -> int:
        """Remove leftovers of writes that never completed (crash mid-upload): local temp files, S3 incomplete
        multipart uploads, older than the given age; returns how many."""
        ...

    async def close(self) -> None: ...


class BadKey(ValueError):
    """A key that is not one the files domain makes (a path out of the store, a backslash, ...)."""


def check_key(key: str) -> str:
    if not key.isascii() or not KEY_PATTERN.fullmatch(key) or any(part in (".", "..") for part in key.split("/")):
        raise BadKey(f"not a store key: {key!r}")
    if any(part.startswith(TEMP_PREFIX) for part in key.split("/")):
        raise BadKey(f"not a store key: {key!r}")
    return key


class LocalStore:
    """Files in a folder of this machine (0700, files 0600, like the instance folder). The blocking calls run in
    threads (asyncio.to_thread), so a slow disk never stops the event loop."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)  # made (0700) by the first write: an instance without uploads has no files/

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def write(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        path = self._path(key)
        await asyncio.to_thread(private_folder, self.root)
        await asyncio.to_thread(_private_folders, self.root, path.parent)
        temp = path.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        opened: list[int] = []  # the temp file's descriptor, once the thread has opened it
        replacing = False
        size = 0
        try:
            await _settled(_open_new, temp, opened)
            async for chunk in chunks:
                if chunk:
                    await _settled(_write_all, opened[0], chunk)
                    size += len(chunk)
            await _settled(os.fsync, opened[0])
            os.close(opened.pop())
            replacing = True
            await _settled(os.replace, temp, path)
        except BaseException:
            # not in threads: this must run even when the task is being cancelled
            if opened:
                os.close(opened.pop())
            if replacing and not temp.exists():  # renamed, then cancelled: the caller counts it as not stored
                path.unlink(missing_ok=True)
            temp.unlink(missing_ok=True)
            raise
        return size

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self._path(key)
        handle = await asyncio.to_thread(open, path, "rb")
        try:
            await asyncio.to_thread(handle.seek, start)
            left = None if end is None else max(0, end - start)
            while left is None or left > 0:
                chunk = await asyncio.to_thread(handle.read, CHUNK if left is None else min(CHUNK, left))
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def size(self, key: str) -> int | None:
        try:
            return (await asyncio.to_thread(self._path(key).stat)).st_size
        except FileNotFoundError:
            return None

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, True)

    async def sweep_incomplete(self, older_than_seconds: float) -> int:
        return await asyncio.to_thread(_sweep, self.root, time.time() - older_than_seconds)

    async def close(self) -> None:
        return None


async def _settled(function, *args):
    """function(*args) in a thread, awaited to its end even when the task is cancelled meanwhile (the cancellation
    is raised after it): a thread that is still writing never sees its descriptor closed, and what the call did to
    the disk is known to the code that undoes it."""
    future = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({future})
        raise


def _open_new(path: Path, opened: list[int]) -> None:
    opened.append(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _private_folders(root: Path, folder: Path) -> None:
    if folder != root:
        _private_folders(root, folder.parent)
        folder.mkdir(mode=PRIVATE_FOLDER, exist_ok=True)


def _sweep(root: Path, before: float) -> int:
    removed = 0
    if not root.is_dir():
        return removed
    for path in root.rglob(f"{TEMP_PREFIX}*"):
        try:
            if path.is_file() and path.stat().st_mtime < before:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # another worker swept it first
            pass
    return removed


def open_store(url: str, settings) -> FileStore:
    """The store CHAT_FILES_URL names: file://PATH or s3://BUCKET/PREFIX."""
    if url.startswith("file://"):
        return LocalStore(Path(url.removeprefix("file://")))
    if url.startswith("s3://"):
        from .file_store_s3 import S3Store, parse_s3_url  # the S3 client is imported only when it is used

        return S3Store(*parse_s3_url(url), endpoint_url=settings.s3_endpoint_url)
    raise ValueError(f"unknown files store {url!r}: file://PATH or s3://BUCKET/PREFIX")
