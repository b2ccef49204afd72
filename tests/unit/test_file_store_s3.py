"""chat/file_store_s3.py against a real S3-compatible server (moto's, started by the `s3_server` fixture): the
FileStore contract (testkit/file_store_contract.py), and what is S3's own (its URL, pending multipart uploads)."""

from __future__ import annotations

import inspect
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Protocol

import pytest
from botocore.exceptions import EndpointConnectionError

from chat.config import ConfigError
from chat.file_store_s3 import S3Store, parse_s3_url
from testkit.file_store_contract import FileStoreContract, digest, payload, read_all
from testkit.s3 import CREDENTIALS
from testkit.servers import ROOT, free_port


class FileStore(Protocol):
    """The seam of chat/file_store.py (issue 16), copied: S3Store must fit it exactly."""

    async def write(self, key: str, chunks: AsyncIterator[bytes]) -> int: ...
    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]: ...
    async def size(self, key: str) -> int | None: ...
    async def delete(self, key: str) -> None: ...
    async def sweep_incomplete(self, older_than_seconds: float) -> int: ...
    async def close(self) -> None: ...


def test_s3_store_fits_the_seam():
    for name, method in inspect.getmembers(FileStore, inspect.isfunction):
        if name.startswith("_"):
            continue
        ours = getattr(S3Store, name)
        assert inspect.signature(ours) == inspect.signature(method), name
        if name == "read":  # an async generator: calling it gives the AsyncIterator
            assert inspect.isasyncgenfunction(ours)
        else:
            assert inspect.iscoroutinefunction(ours), name


@pytest.fixture
def s3_env(monkeypatch, s3_server):
    """The AWS_* variables that botocore reads, pointing at moto (and nothing of the machine's)."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    return s3_server


@pytest.fixture
async def store(s3_env):
    """A store of its own: the shared bucket, under a prefix that no other test uses."""
    s3 = S3Store(s3_env.bucket, f"t-{uuid.uuid4().hex[:12]}", endpoint_url=s3_env.endpoint)
    yield s3
    await s3.close()


async def pending_uploads(store: S3Store) -> list[dict]:
    client = await store.client()
    answer = await client.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix + "/")
    return answer.get("Uploads", [])


class TestS3Store(FileStoreContract):
    async def leftovers(self, store):
        return len(await pending_uploads(store))

    async def make_leftover(self, store):
        client = await store.client()
        await client.create_multipart_upload(Bucket=store.bucket, Key=f"{store.prefix}/zz/crashed")

    async def test_sweep_removes_old_leftovers_only(self, store, monkeypatch):
        """The contract's test, on the clock that moto's ListMultipartUploads tells: it answers a fixed Initiated
        (2010-11-10T20:48:33Z) for every upload, so the sweep's "now" is set from that date."""
        await store.write("mn/complete", payload("complete", 1000))
        await self.make_leftover(store)
        (upload,) = await pending_uploads(store)
        initiated = upload["Initiated"].timestamp()
        assert upload["Initiated"] == datetime(2010, 11, 10, 20, 48, 33, tzinfo=UTC)  # moto's; else drop this override
        monkeypatch.setattr("chat.file_store_s3._now", lambda: initiated + 60)
        assert await store.sweep_incomplete(3600) == 0  # a minute old: an upload still going on
        assert await self.leftovers(store) == 1
        monkeypatch.setattr("chat.file_store_s3._now", lambda: initiated + 7200)
        assert await store.sweep_incomplete(3600) == 1
        assert await self.leftovers(store) == 0
        assert await store.sweep_incomplete(0) == 0
        assert await store.size("mn/complete") == 1000  # complete files are never swept


async def test_the_parts_of_a_big_file_are_uploaded_as_they_fill(store):
    """While a big upload goes on, its first parts are already in the store (not held until the end), and the
    object is not visible."""
    seen = {}

    async def watched():
        sent = 0
        async for chunk in payload("watched", 20 * 1024 * 1024):
            yield chunk
            sent += len(chunk)
            if sent == 17 * 1024 * 1024:  # two parts of 8 MiB were full before this chunk was taken
                uploads = await pending_uploads(store)
                client = await store.client()
                listed = await client.list_parts(
                    Bucket=store.bucket, Key=uploads[0]["Key"], UploadId=uploads[0]["UploadId"]
                )
                seen["parts"] = [part["Size"] for part in listed["Parts"]]
                seen["visible"] = await store.size("st/watched")

    assert await store.write("st/watched", watched()) == 20 * 1024 * 1024
    assert seen == {"parts": [8 * 1024 * 1024, 8 * 1024 * 1024], "visible": None}
    assert await pending_uploads(store) == []


async def test_two_stores_share_the_files(s3_env):
    """Two workers (two stores, two clients) serve each other's files; a sweep only touches its own prefix."""
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    one = S3Store(s3_env.bucket, prefix, endpoint_url=s3_env.endpoint)
    two = S3Store(s3_env.bucket, prefix, endpoint_url=s3_env.endpoint)
    other = S3Store(s3_env.bucket, prefix + "-other", endpoint_url=s3_env.endpoint)
    try:
        await one.write("uv/shared", payload("shared", 9 * 1024 * 1024))
        assert await two.size("uv/shared") == 9 * 1024 * 1024
        assert await digest(two.read("uv/shared")) == await digest(payload("shared", 9 * 1024 * 1024))
        client = await other.client()
        await client.create_multipart_upload(Bucket=other.bucket, Key=f"{other.prefix}/xx/pending")
        assert await one.sweep_incomplete(0) == 0  # prefix-other/ is not under prefix/
        assert await other.sweep_incomplete(0) == 1
        await two.delete("uv/shared")
        assert await one.size("uv/shared") is None
    finally:
        for store in (one, two, other):
            await store.close()


WRITER = """
import asyncio, sys
from chat.file_store_s3 import S3Store
from testkit.file_store_contract import payload

async def main(bucket, prefix, endpoint):
    store = S3Store(bucket, prefix, endpoint_url=endpoint)
    try:
        print(await store.write("yz/from-elsewhere", payload("elsewhere", 9 * 1024 * 1024)))
    finally:
        await store.close()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_file_written_by_another_process_is_served_here(store, s3_env):
    """Two workers on two machines: another process writes through S3 (its own client and settings), this one
    reads it."""
    done = subprocess.run(
        [sys.executable, "-c", WRITER, store.bucket, store.prefix, s3_env.endpoint],
        cwd=ROOT,
        env={**s3_env.env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip() == str(9 * 1024 * 1024), done.stderr
    assert await store.size("yz/from-elsewhere") == 9 * 1024 * 1024
    assert await digest(store.read("yz/from-elsewhere")) == await digest(payload("elsewhere", 9 * 1024 * 1024))


async def test_an_unreachable_store_is_an_error_not_a_hang(s3_env):
    """Nothing listens on the endpoint: each call fails after botocore's few retries (the files domain answers it)."""
    store = S3Store(s3_env.bucket, "t-unreachable", endpoint_url=f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(EndpointConnectionError):
            await store.write("ab/x", payload("x", 100))
        with pytest.raises(EndpointConnectionError):
            await store.size("ab/x")
        with pytest.raises(EndpointConnectionError):
            await read_all(store, "ab/x")
    finally:
        await store.close()


async def test_close_then_use_again_opens_a_new_client(store):
    await store.write("wx/a", payload("a", 10))
    await store.close()
    await store.close()  # twice is fine
    assert await store.size("wx/a") == 10


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://chat-files/files", ("chat-files", "files")),
        ("s3://my.bucket-1/a/b/", ("my.bucket-1", "a/b")),
        ("s3://abc/deploy_1/files", ("abc", "deploy_1/files")),
    ],
)
def test_parse_s3_url(url, expected):
    assert parse_s3_url(url) == expected


@pytest.mark.parametrize("prefix", ["", "/", "//"])
def test_a_store_needs_a_prefix(prefix):
    with pytest.raises(ValueError, match="prefix"):
        S3Store("chat-files", prefix)


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3:///files",
        "s3://bucket",  # no prefix
        "s3://bucket/",
        "s3://Bucket/files",  # upper case
        "s3://ab/files",  # too short
        "s3://-bucket/files",
        "s3://bu..cket/files",
        "s3://key:secret@bucket/files",
        "s3://bucket:9000/files",
        "s3://bucket/files?region=x",
        "s3://bucket/files#x",
        "s3://bucket/a/../b",
        "s3://bucket/a//b",
        "s3://bucket/sp ace",
        "file:///tmp/files",
        "http://bucket/files",
    ],
)
def test_bad_s3_urls_are_configuration_errors(url):
    with pytest.raises(ConfigError, match="CHAT_FILES_URL"):
        parse_s3_url(url)
