"""History pages kept as the bytes of their answer, each valid while its room has not changed.

Opening a conversation asks for its newest page, and a team opens the same rooms again and again: building 50
messages into JSON was most of a history request's own time (docs/performance.md, issue 19 part 6). So the answer
of `GET /get-messages` is kept here, keyed by the room and the page's bounds, with the room's *version*: the id of
its newest row. Every change to what a page shows is a new row of the room (a message, or an edit, delete or
reaction event: conversations and changes store them in the change's transaction), so a page whose room still
has the same newest row is still right, and a page is served only after that id was read again.

What changes pages without a row in the room: the deletion of an account whose content is removed. Each worker
hears of it (accounts.py, the accounts channel) and forgets every page; a worker that lost the channel's events
forgets every page too, and no page is kept longer than `ttl` seconds in any case (the bound, as for sessions).
A page read while pages were forgotten is not kept (`generation`, as SessionCache does).

Bounded: at most `max_bytes` of answers, the least recently used going first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

PAGE_CACHE_SECONDS = 5.0
PAGE_CACHE_BYTES = 8 * 1024 * 1024


@dataclass(slots=True)
class _Page:
    version: int
    good_until: float
    body: bytes


class PageCache:
    def __init__(self, ttl: float = PAGE_CACHE_SECONDS, max_bytes: int = PAGE_CACHE_BYTES) -> None:
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._pages: OrderedDict[tuple, _Page] = OrderedDict()
        self._bytes = 0
        # bumped by every forget(): a page read before one must not be kept
        self.generation = 0

    def get(self, key: tuple, version: int) -> bytes | None:
        page = self._pages.get(key)
        if page is None:
            return None
        if page.version != version or page.good_until <= time.monotonic():
            self._drop(key)
            return None
        self._pages.move_to_end(key)
        return page.body

    def put(self, key: tuple, version: int, body: bytes, generation: int) -> None:
        if self.ttl <= 0 or generation != self.generation or len(body) > self.max_bytes // 8:
            return
        self._drop(key)
        self._pages[key] = _Page(version, time.monotonic() + self.ttl, body)
        self._bytes += len(body)
        while self._bytes > self.max_bytes:
            self._drop(next(iter(self._pages)))  # the least recently used

    def forget(self) -> None:
        self.generation += 1
        self._pages.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._pages)

    def _drop(self, key: tuple) -> None:
        page = self._pages.pop(key, None)
        if page is not None:
            self._bytes -= len(page.body)
