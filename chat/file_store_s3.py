"""The `s3://BUCKET/PREFIX` file store (CHAT_FILES_URL): uploaded files in any S3-compatible object store, so that
several machines serve each other's files. `chat.file_store.open_store` imports this module only when it is used.

The store behind the `FileStore` seam of `chat/file_store.py`, with aiobotocore (one client per store, opened on
first use and closed by `close()`). Objects are named `PREFIX/KEY`. Credentials and region come from the usual
AWS_* environment variables (or the other places botocore looks); the region is us-east-1 when none is set;
CHAT_S3_ENDPOINT_URL names a store other than AWS (MinIO, Ceph, moto, ...), addressed path-style.

A write is atomic and memory stays bounded, whatever the file's size: the chunks are spooled to an anonymous
temporary file (deleted by the kernel even after a crash) one part at a time; a file smaller than one part is one
PutObject, a larger one a multipart upload whose parts go up as they fill and which becomes visible only with
CompleteMultipartUpload. A write that fails or is cancelled aborts its upload (the abort is shielded from the
cancellation), and `sweep_incomplete` aborts the uploads that a crashed worker left pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable
from typing import IO, Any
from urllib.parse import urlsplit

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from .config import ConfigError
from .file_store import KEY_PATTERN, check_key

log = logging.getLogger(__name__)

CHUNK = 256 * 1024  # what read() yields at most at once (FileStore's contract)
SENDING_AT_ONCE = 1
PART_SIZE = 8 * 1024 * 1024  # S3's smallest part is 5 MiB (except the last); 8 MiB is the AWS tools' default
DEFAULT_REGION = "us-east-1"
CLEANUP_TIMEOUT = 30.0  # an abort or delete after a failed write waits at most this long

# S3's bucket names: 3 to 63 lower-case letters, digits, dots and hyphens, beginning and ending with a letter or digit
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://BUCKET/PREFIX` -> (bucket, prefix); the prefix is one or more path segments, without slashes at either
    end. A URL chat cannot use is a ConfigError that names CHAT_FILES_URL (at start-up)."""

    def bad(why: str) -> ConfigError:
        return ConfigError(f"CHAT_FILES_URL {url!r}: {why} (expected s3://BUCKET/PREFIX)")

    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise bad("not an s3:// URL")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise bad("no query or fragment")
    if "@" in parts.netloc or ":" in parts.netloc:
        raise bad("the bucket is a name only (credentials: AWS_* variables; the endpoint: CHAT_S3_ENDPOINT_URL)")
    bucket = parts.netloc
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise bad(f"{bucket!r} is not an S3 bucket name")
    prefix = parts.path.strip("/")
    if not prefix:
        raise bad("a prefix is needed (the store's objects are PREFIX/...; sweeps touch nothing outside it)")
    if not KEY_PATTERN.fullmatch(prefix) or any(segment in (".", "..") for segment in prefix.split("/")):
        raise bad(f"the prefix {prefix!r} may hold only letters, digits, '.', '_', '-' and '/' between segments")
    return bucket, prefix


class S3Store:
    """Files as objects `PREFIX/KEY` of one bucket of an S3-compatible store (see the module's text)."""

    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if not self.prefix:  # sweeps and names stay under PREFIX/: never the whole bucket
            raise ValueError("an S3 store needs a prefix")
        self.endpoint_url = endpoint_url
        self._client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._opening: asyncio.Lock | None = None
        # parts on their way to the store at once, across all of this worker's uploads: the client's buffers for
        # a request in flight are what an upload costs in memory, so many uploads at once cost no more than these
        self._sending = asyncio.Semaphore(SENDING_AT_ONCE)

    def _name(self, key: str) -> str:
        return f"{self.prefix}/{check_key(key)}"

    async def client(self) -> Any:
        """The store's one client, opened on first use (every call of every task shares it and its pool)."""
        if self._client is not None:
            return self._client
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._client is None:
                session = get_session()
                region = session.get_config_variable("region") or DEFAULT_REGION
                # another S3-compatible store (MinIO, Ceph, moto, ...) is often reached by address: the bucket goes
                # in the path; and several refuse the CRC32 checksums that botocore sends AWS since 1.36, so they
                # are sent only where an operation requires them (SigV4 or TLS still covers the bytes)
                compatible = (
                    {"request_checksum_calculation": "when_required", "response_checksum_validation": "when_required"}
                    if self.endpoint_url
                    else {}
                )
                config = AioConfig(
                    signature_version="s3v4",
                    s3={"addressing_style": "path" if self.endpoint_url else "auto"},
                    **compatible,
                    retries={"mode": "standard", "max_attempts": 3},
                    connect_timeout=10,
                    read_timeout=60,
                    max_pool_connections=50,
                )
                stack = contextlib.AsyncExitStack()
                self._client = await stack.enter_async_context(
                    session.create_client("s3", region_name=region, endpoint_url=self.endpoint_url, config=config)
                )
                self._stack = stack
        return self._client

    async def write(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        name = self._name(key)
        s3 = await self.client()
        spool = await asyncio.to_thread(tempfile.TemporaryFile)  # noqa: SIM115 - closed in the finally below
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        size = buffered = 0
        committing = False  # the request that makes the object visible is on its way: undo it on failure too
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                await asyncio.to_thread(spool.write, chunk)
                size += len(chunk)
                buffered += len(chunk)
                if buffered >= PART_SIZE:
                    if upload_id is None:
                        upload_id = await self._begin(s3, name)
                    parts.append(await self._upload_part(s3, name, upload_id, len(parts) + 1, spool, buffered))
                    buffered = 0
            if upload_id is None:
                await asyncio.to_thread(spool.seek, 0)
                committing = True
                async with self._sending:
                    await s3.put_object(Bucket=self.bucket, Key=name, Body=spool, ContentLength=buffered)
            else:
                if buffered:
                    parts.append(await self._upload_part(s3, name, upload_id, len(parts) + 1, spool, buffered))
                committing = True
                await s3.complete_multipart_upload(
                    Bucket=self.bucket, Key=name, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
        except BaseException:
            if upload_id is not None:
                await _finish(s3.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id), "abort")
            if committing:  # it may have reached the store before the failure (a cancel while waiting the answer)
                await _finish(s3.delete_object(Bucket=self.bucket, Key=name), "delete")
            raise
        finally:
            spool.close()
        return size

    async def _begin(self, s3: Any, name: str) -> str:
        """CreateMultipartUpload, waited for even when the write is cancelled meanwhile: the upload exists as soon
        as the store has it, and the write must know its id to abort it."""
        begin = asyncio.ensure_future(s3.create_multipart_upload(Bucket=self.bucket, Key=name))
        if await _settle(begin):
            if not begin.cancelled() and begin.exception() is None:
                await _finish(
                    s3.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=begin.result()["UploadId"]),
                    "abort",
                )
            raise asyncio.CancelledError
        return begin.result()["UploadId"]

    async def _upload_part(
        self, s3: Any, name: str, upload_id: str, number: int, spool: IO[bytes], length: int
    ) -> dict[str, Any]:
        await asyncio.to_thread(spool.seek, 0)
        async with self._sending:
            answer = await s3.upload_part(
                Bucket=self.bucket, Key=name, UploadId=upload_id, PartNumber=number, Body=spool, ContentLength=length
            )
        await asyncio.to_thread(_empty, spool)
        return {"PartNumber": number, "ETag": answer["ETag"]}

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        name = self._name(key)
        if start < 0 or (end is not None and end <= start):
            return
        s3 = await self.client()
        ranged = {"Range": f"bytes={start}-{'' if end is None else end - 1}"} if start or end is not None else {}
        try:
            answer = await s3.get_object(Bucket=self.bucket, Key=name, **ranged)
        except ClientError as error:
            code = _code(error)
            if code in _NOT_FOUND:
                raise FileNotFoundError(f"no file {key!r} in the store") from None
            if code == "InvalidRange":  # start at or past the end: no bytes, as from a local file
                return
            raise
        async with answer["Body"] as body:
            async for chunk in body.iter_chunks(CHUNK):
                yield chunk

    async def size(self, key: str) -> int | None:
        name = self._name(key)
        s3 = await self.client()
        try:
            return int((await s3.head_object(Bucket=self.bucket, Key=name))["ContentLength"])
        except ClientError as error:
            if _code(error) in _NOT_FOUND:
                return None
            raise

    async def delete(self, key: str) -> None:
        name = self._name(key)
        s3 = await self.client()
        await s3.delete_object(Bucket=self.bucket, Key=name)  # S3 answers 204 for an absent object too

    async def sweep_incomplete(self, older_than_seconds: float) -> int:
        s3 = await self.client()
        before = _now() - older_than_seconds
        aborted = 0
        pages = s3.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=self.prefix + "/")
        async for page in pages:
            for upload in page.get("Uploads", []):
                if upload["Initiated"].timestamp() >= before:
                    continue
                try:
                    await s3.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                except ClientError as error:
                    if _code(error) != "NoSuchUpload":  # another worker's sweep, or the write itself, was first
                        raise
                    continue
                aborted += 1
        return aborted

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()


async def _settle(task: asyncio.Future) -> bool:
    """Wait until the task is done, through any cancellation of the caller: whether there was one."""
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True  # the task goes on; the caller passes the cancellation on once it is done
        except Exception:  # noqa: S110 - the caller reads the task's outcome
            pass
    return cancelled


def _now() -> float:
    return time.time()


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _empty(spool: IO[bytes]) -> None:
    spool.seek(0)
    spool.truncate()


async def _finish(cleanup: Awaitable[Any], what: str) -> None:
    """Run a failed write's clean-up to its end, even while the write is being cancelled (a second cancel does
    not stop it either); a clean-up that fails is logged: `sweep_incomplete` removes what it left."""
    task = asyncio.ensure_future(asyncio.wait_for(cleanup, CLEANUP_TIMEOUT))
    cancelled = await _settle(task)
    error = None if task.cancelled() else task.exception()
    if error is not None and not (isinstance(error, ClientError) and _code(error) in ("NoSuchUpload", *_NOT_FOUND)):
        log.warning("S3 %s after a failed write did not complete: %r", what, error)
    if cancelled:
        raise asyncio.CancelledError
