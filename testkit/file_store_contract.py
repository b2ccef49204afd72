"""The contract of chat/file_store.py's `FileStore` seam, as tests that every store runs (`FileStoreContract`).

A test module subclasses it once per store (`class TestS3Store(FileStoreContract)`) and gives:

- the fixture `store`: a fresh, empty store (closed after the test);
- `leftovers(store)`: how many incomplete writes the store holds (local: temp files; S3: pending multipart uploads);
- `make_leftover(store)`: leave one such incomplete write, as a worker that crashed mid-upload would;
- `part_size`: past this many bytes a write is in several parts (S3's multipart), so that the failure tests fail
  after more than one part.

The bytes are made on the fly (`payload`), and checked by their digest (`digest`): no test holds a big file whole.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import threading
import time
from collections.abc import AsyncIterator

import pytest

from . import probes

MiB = 1024 * 1024
READ_CHUNK = 256 * 1024  # the seam's largest chunk from read()
STREAM_CHUNK = 64 * 1024  # what a request body hands a store at once, about


class Boom(Exception):
    """What a failing upload's iterator raises (a 413 mid-stream, a client gone, ...)."""


def _block(seed: str, index: int) -> bytes:
    return random.Random(f"{seed}:{index}").randbytes(STREAM_CHUNK)  # noqa: S311 - test data, not secrets


async def payload(seed: str, size: int, chunk: int = STREAM_CHUNK) -> AsyncIterator[bytes]:
    """`size` pseudo-random bytes, the same for the same seed, in chunks of `chunk` bytes (the last one shorter)."""
    sent = 0
    index = 0
    pending = b""
    while sent < size:
        while len(pending) < chunk and sent + len(pending) < size:
            pending += _block(seed, index)
            index += 1
        piece = pending[: min(chunk, size - sent)]
        pending = pending[len(piece) :]
        sent += len(piece)
        yield piece
        await asyncio.sleep(0)


async def digest(chunks: AsyncIterator[bytes]) -> tuple[str, int]:
    hashed = hashlib.sha256()
    size = 0
    async for chunk in chunks:
        hashed.update(chunk)
        size += len(chunk)
    return hashed.hexdigest(), size


async def payload_bytes(seed: str, size: int) -> bytes:
    return b"".join([chunk async for chunk in payload(seed, size)])


async def failing(seed: str, size: int, after: int) -> AsyncIterator[bytes]:
    """The payload's first `after` bytes, then Boom."""
    async for chunk in payload(seed, size):
        if after <= 0:
            raise Boom("the upload broke off")
        after -= len(chunk)
        yield chunk
    raise Boom("the upload broke off")


async def read_all(store, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(key, start, end)])


class PeakRSS:
    """The highest RSS of this process while the block runs, sampled every few milliseconds by a thread."""

    def __init__(self) -> None:
        self.before = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, probes.rss_kib(os.getpid()))

    def __enter__(self) -> PeakRSS:
        self.before = self.peak = probes.rss_kib(os.getpid())
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, probes.rss_kib(os.getpid()))

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.before) / 1024


class FileStoreContract:
    part_size: int = 8 * MiB
    # RSS growth allowed while ten 50 MiB uploads go at once (issue 16: < 20 MiB); one upload alone: less
    memory_limit_mib: float = 20.0

    async def leftovers(self, store) -> int:
        raise NotImplementedError

    async def make_leftover(self, store) -> None:
        raise NotImplementedError

    async def test_small_round_trip(self, store):
        data = b"hello, files\n"

        async def chunks():
            yield data[:5]
            yield b""
            yield data[5:]

        assert await store.write("ab/small", chunks()) == len(data)
        assert await store.size("ab/small") == len(data)
        assert await read_all(store, "ab/small") == data

    async def test_empty_file(self, store):
        async def nothing():
            return
            yield b""

        assert await store.write("ab/empty", nothing()) == 0
        assert await store.size("ab/empty") == 0
        assert await read_all(store, "ab/empty") == b""

    async def test_multipart_round_trip_in_bounded_chunks(self, store):
        size = 2 * self.part_size + 4 * MiB + 123  # three parts, the last one short
        assert await store.write("cd/big", payload("big", size)) == size
        assert await store.size("cd/big") == size
        chunks = [len(chunk) async for chunk in store.read("cd/big")]
        assert sum(chunks) == size and max(chunks) <= READ_CHUNK
        assert await digest(store.read("cd/big")) == await digest(payload("big", size))
        # a range across a part boundary
        start, end = self.part_size - 1000, self.part_size + 1000
        expected = (await payload_bytes("big", end))[start:]
        assert await read_all(store, "cd/big", start, end) == expected

    async def test_ranges(self, store):
        size = 300 * 1024 + 7  # more than one read chunk
        data = await payload_bytes("ranges", size)
        await store.write("ef/ranged", payload("ranges", size))
        assert await read_all(store, "ef/ranged") == data
        assert await read_all(store, "ef/ranged", 10, 20) == data[10:20]
        assert await read_all(store, "ef/ranged", 0, 1) == data[:1]
        assert await read_all(store, "ef/ranged", 1000) == data[1000:]  # from an offset to the end
        assert await read_all(store, "ef/ranged", size - 5) == data[-5:]  # a suffix
        assert await read_all(store, "ef/ranged", size - 3, size + 100) == data[-3:]  # an end past the file's
        assert await read_all(store, "ef/ranged", 7, 7) == b""
        assert await read_all(store, "ef/ranged", size) == b""
        assert await read_all(store, "ef/ranged", size + 10) == b""
        chunks = [len(chunk) async for chunk in store.read("ef/ranged", 5)]
        assert max(chunks) <= READ_CHUNK and sum(chunks) == size - 5

    async def test_absent(self, store):
        assert await store.size("gh/absent") is None
        with pytest.raises(FileNotFoundError):
            await read_all(store, "gh/absent")

    async def test_delete_is_idempotent(self, store):
        await store.write("gh/gone", payload("gone", 1000))
        await store.delete("gh/gone")
        assert await store.size("gh/gone") is None
        await store.delete("gh/gone")
        await store.delete("gh/never-there")
        assert await store.size("gh/gone") is None

    @pytest.mark.parametrize("key", ["../escape", "/abs/olute", "ab/../../x", "back\\slash", "ab//c", "é/x", ""])
    async def test_keys_that_leave_the_store_are_refused(self, store, key):
        with pytest.raises(ValueError):
            await store.size(key)
        with pytest.raises(ValueError):
            await store.write(key, payload("bad", 10))
        with pytest.raises(ValueError):
            await read_all(store, key)
        with pytest.raises(ValueError):
            await store.delete(key)

    async def test_a_write_that_breaks_off_after_parts_leaves_nothing(self, store):
        size = 3 * self.part_size
        with pytest.raises(Boom):
            await store.write("ij/broken", failing("broken", size, after=2 * self.part_size + MiB))
        assert await store.size("ij/broken") is None
        assert await self.leftovers(store) == 0

    async def test_a_write_that_breaks_off_early_leaves_nothing(self, store):
        with pytest.raises(Boom):
            await store.write("ij/early", failing("early", MiB, after=100_000))
        assert await store.size("ij/early") is None
        assert await self.leftovers(store) == 0

    async def test_a_cancelled_write_leaves_nothing(self, store):
        reached = asyncio.Event()

        async def stalls():
            async for chunk in payload("stalls", 2 * self.part_size + MiB):
                yield chunk
            reached.set()  # more than two parts were taken (and stored, for S3): the upload now waits for more
            await asyncio.Event().wait()
            yield b"never"

        write = asyncio.create_task(store.write("kl/cancelled", stalls()))
        await asyncio.wait_for(reached.wait(), 120)
        assert await self.leftovers(store) == 1  # the incomplete write exists (and is what the cancel removes)
        write.cancel()
        with pytest.raises(asyncio.CancelledError):
            await write
        assert await store.size("kl/cancelled") is None
        assert await self.leftovers(store) == 0

    async def test_a_write_cancelled_while_storing_leaves_nothing(self, store):
        """Cancelled as soon as its incomplete write shows (S3: the upload begun, its first part on its way)."""
        write = asyncio.create_task(store.write("kl/in-flight", payload("in-flight", 3 * self.part_size)))
        deadline = time.monotonic() + 60
        while not await self.leftovers(store):
            assert not write.done() and time.monotonic() < deadline
            await asyncio.sleep(0.001)
        write.cancel()
        with pytest.raises(asyncio.CancelledError):
            await write
        assert await store.size("kl/in-flight") is None
        assert await self.leftovers(store) == 0

    async def test_sweep_removes_old_leftovers_only(self, store):
        await store.write("mn/complete", payload("complete", 1000))
        await self.make_leftover(store)
        assert await self.leftovers(store) == 1
        time.sleep(1.1)  # noqa: ASYNC251 - the leftover must be older than a second; nothing else runs meanwhile
        assert await store.sweep_incomplete(3600) == 0
        assert await self.leftovers(store) == 1
        assert await store.sweep_incomplete(0.5) == 1
        assert await self.leftovers(store) == 0
        assert await store.size("mn/complete") == 1000  # complete files are never swept

    async def test_concurrent_writes_of_different_keys(self, store):
        sizes = {f"op/{n}": (self.part_size + n * 333_333 if n % 2 else 10_000 + n) for n in range(6)}
        written = await asyncio.gather(*(store.write(key, payload(key, size)) for key, size in sizes.items()))
        assert written == list(sizes.values())
        for key, size in sizes.items():
            assert await store.size(key) == size
            assert await digest(store.read(key)) == await digest(payload(key, size))

    async def test_memory_stays_bounded_while_ten_big_files_are_written(self, store):
        # warm up: the client, its connections, the modules and the allocator's pools are there before measuring
        await asyncio.gather(*(store.write(f"qr/warm{n}", payload("warm", self.part_size + MiB)) for n in range(10)))
        size = 50 * MiB
        with PeakRSS() as rss:
            written = await asyncio.gather(*(store.write(f"qr/big{n}", payload(f"big{n}", size)) for n in range(10)))
        print(
            f"\n{type(self).__name__}: ten 50 MiB writes at once: RSS {rss.before / 1024:.1f} MiB, "
            f"peak growth {rss.growth_mib:.1f} MiB"
        )
        assert written == [size] * 10
        assert rss.growth_mib < self.memory_limit_mib, rss.growth_mib
        assert await digest(store.read("qr/big3")) == await digest(payload("big3", size))
        for n in range(10):
            await store.delete(f"qr/big{n}")
            await store.delete(f"qr/warm{n}")
