"""The files store seam (chat/file_store.py): atomic writes (a failing or cancelled write leaves nothing), ranged
reads in chunks of at most 256 KiB, idempotent deletes, the sweep of crashed writes, keys that cannot leave the
store, and private modes. The `store` fixture is the one place a store kind is chosen (testkit.files)."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from chat.config import load_settings
from chat.file_store import CHUNK, TEMP_PREFIX, BadKey, LocalStore, open_store
from testkit.file_store_contract import FileStoreContract
from testkit.files import FILE_STORES, store_settings


@pytest.fixture(params=FILE_STORES)
async def store(request, tmp_path, monkeypatch):
    s3 = request.getfixturevalue("s3_server") if request.param == "s3" else None
    settings = store_settings(request.param, tmp_path, s3)
    for name, value in settings.items():  # the S3 client reads its credentials from the environment
        monkeypatch.setenv(name, value)
    opened = open_store(settings["CHAT_FILES_URL"], load_settings(None, instance_path=tmp_path / "instance"))
    yield opened
    await opened.close()


async def chunks(*parts: bytes, fail: BaseException | None = None):
    for part in parts:
        yield part
        await asyncio.sleep(0)
    if fail is not None:
        raise fail


async def read_all(store, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(key, start, end)])


async def test_write_read_size_delete(store):
    data = os.urandom(CHUNK * 2 + 123)
    assert await store.write("ab/abcdef", chunks(data[:1000], data[1000:])) == len(data)
    assert await store.size("ab/abcdef") == len(data)
    assert await read_all(store, "ab/abcdef") == data
    assert await read_all(store, "ab/abcdef", 10, 20) == data[10:20]
    assert await read_all(store, "ab/abcdef", CHUNK - 5) == data[CHUNK - 5 :]
    assert all([len(chunk) <= CHUNK async for chunk in store.read("ab/abcdef")])
    await store.delete("ab/abcdef")
    await store.delete("ab/abcdef")  # idempotent
    assert await store.size("ab/abcdef") is None


async def test_a_failing_or_cancelled_write_leaves_nothing_visible(store, tmp_path):
    with pytest.raises(ValueError):
        await store.write("cd/failed", chunks(b"x" * 1000, fail=ValueError("413")))
    assert await store.size("cd/failed") is None

    async def endless():
        while True:
            yield b"y" * 1000
            await asyncio.sleep(0.001)

    task = asyncio.create_task(store.write("cd/cancelled", endless()))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.size("cd/cancelled") is None
    if isinstance(store, LocalStore):
        assert not list(store.root.rglob(".tmp-*"))


async def test_local_store_sweeps_crashed_writes_and_keeps_modes(tmp_path):
    store = LocalStore(tmp_path / "files")
    await store.write("ef/kept", chunks(b"kept"))
    leftover = store.root / "ef" / ".tmp-crashed"
    leftover.write_bytes(b"half")
    assert await store.sweep_incomplete(3600) == 0  # fresh: may be a live upload
    old = time.time() - 7200
    os.utime(leftover, (old, old))
    assert await store.sweep_incomplete(3600) == 1
    assert not leftover.exists() and await store.size("ef/kept") == 4
    assert (store.root.stat().st_mode & 0o777) == 0o700
    assert ((store.root / "ef").stat().st_mode & 0o777) == 0o700
    assert ((store.root / "ef" / "kept").stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a\\b", "a/../../b", "", "a//b", ".tmp-x", "é"])
async def test_keys_cannot_leave_the_store(tmp_path, key):
    store = LocalStore(tmp_path / "files")
    with pytest.raises(BadKey):
        await store.write(key, chunks(b"x"))
    with pytest.raises(BadKey):
        await store.size(key)


class TestLocalStoreContract(FileStoreContract):
    """The store contract the S3 store passes too (testkit.file_store_contract), on a folder."""

    @pytest.fixture
    async def store(self, tmp_path):
        opened = LocalStore(tmp_path / "contract-store")
        yield opened
        await opened.close()

    async def leftovers(self, store):
        return len(list(store.root.rglob(TEMP_PREFIX + "*"))) if store.root.exists() else 0

    async def make_leftover(self, store):
        folder = store.root / "zz"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / (TEMP_PREFIX + "crashed")).write_bytes(b"x")
