"""A socket's buffers: a plain bounded FIFO with one reader, and a flag that costs nothing until awaited.

Each open websocket has two of them (what the broker has for it, what its client sent) and one task that reads
both (blueprints/realtime.py). asyncio.Queue and asyncio.Event cost ~1 KiB each before they hold anything (a deque
per queue of getters, of putters, of items, of an event's waiters): at 10 000 sockets that is tens of MB for
nothing. Here an empty mailbox is six slots; its deque is made with the first item and dropped with the last.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class Mailbox:
    """A bounded FIFO read by one task. `put_nowait` raises asyncio.QueueFull when full (the broker then marks the
    subscription overflowed); `put` waits for room (the inbound side's backpressure; hypercorn's connection may
    have two producers waiting at once: its reading loop and its close).

    `listener`: another mailbox whose reader is woken by this one's items too, so that one task waits for two.
    """

    __slots__ = ("maxsize", "listener", "closed", "_items", "_waiter", "_putters")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.listener: Mailbox | None = None
        self.closed = False  # nothing more will come: the reader decides what that means
        self._items: deque | None = None
        self._waiter: asyncio.Future | None = None  # the reader, waiting for an item or a wake()
        self._putters: deque[asyncio.Future] | None = None  # producers waiting for room, made with the first

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return self.qsize() >= self.maxsize

    def put_nowait(self, item: object) -> None:
        if self._items is None:
            self._items = deque()
        elif len(self._items) >= self.maxsize:
            raise asyncio.QueueFull
        self._items.append(item)
        self.wake()
        if self.listener is not None:
            self.listener.wake()

    async def put(self, item: object) -> None:
        while self.full():
            putter = asyncio.get_running_loop().create_future()
            if self._putters is None:
                self._putters = deque()
            self._putters.append(putter)
            try:
                await putter
            except asyncio.CancelledError:
                if putter.done() and not putter.cancelled():  # woken for room it will not take: pass it on
                    self._wake_putter()
                raise
            finally:
                if putter in self._putters:
                    self._putters.remove(putter)
        self.put_nowait(item)

    def last(self) -> object | None:
        """The newest item, None when empty (asgi_websocket.client_gone: whether the last event is a disconnect)."""
        return self._items[-1] if self._items else None

    def get_nowait(self) -> object:
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.popleft()
        if not self._items:
            self._items = None  # an empty deque is ~600 B: an idle socket keeps none
        self._wake_putter()
        return item

    def _wake_putter(self) -> None:
        while self._putters:
            putter = self._putters.popleft()
            if not putter.done():
                putter.set_result(None)
                return

    async def get(self) -> object:
        while not self._items:
            await self.wait()
        return self.get_nowait()

    async def wait(self) -> None:
        """Until an item arrives (here or in a mailbox this one listens to) or `wake()` is called."""
        if self._items:
            return
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            if self._waiter is waiter:  # a reader cancelled while another took over (asgi_websocket's drainer)
                self._waiter = None

    def wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def close(self) -> None:
        """Mark the end of the items, and wake the reader (and the listener's) to see it."""
        self.closed = True
        self.wake()
        if self.listener is not None:
            self.listener.wake()


class Flag:
    """asyncio.Event's is_set / set / wait, with no Event until someone waits, and a callback when it is set."""

    __slots__ = ("_set", "_event", "on_set")

    def __init__(self) -> None:
        self._set = False
        self._event: asyncio.Event | None = None
        self.on_set: Callable[[], None] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        if self._event is not None:
            self._event.set()
        if self.on_set is not None:
            self.on_set()

    async def wait(self) -> bool:
        if self._set:
            return True
        if self._event is None:
            self._event = asyncio.Event()
        return await self._event.wait()
