"""chat.page_cache: history answers kept while their room's newest row is the same (the routes: test_messaging.py,
the workers: tests/system/test_scaleout.py)."""

from __future__ import annotations

import time

from chat.page_cache import PageCache

ROOM_PAGE = ("dm:1:2", None, None, 50)


def test_a_page_is_served_only_at_the_version_it_was_built_at():
    pages = PageCache()
    pages.put(ROOM_PAGE, 10, b"page at 10", pages.generation)
    assert pages.get(ROOM_PAGE, 10) == b"page at 10"
    assert pages.get(ROOM_PAGE, 11) is None  # the room has a newer row: the page is dropped
    assert pages.get(ROOM_PAGE, 10) is None and len(pages) == 0
    assert pages.get(("dm:1:2", None, 5, 50), 10) is None  # other bounds, another page


def test_no_page_outlives_its_ttl(monkeypatch):
    pages, now = PageCache(ttl=5.0), time.monotonic()
    pages.put(ROOM_PAGE, 10, b"page", pages.generation)
    monkeypatch.setattr(time, "monotonic", lambda: now + 5.1)
    assert pages.get(ROOM_PAGE, 10) is None


def test_a_page_read_before_the_pages_were_forgotten_is_not_kept():
    pages = PageCache()
    pages.put(ROOM_PAGE, 10, b"page", pages.generation)
    generation = pages.generation  # a request reads the room's version and its page ...
    pages.forget()  # ... while an account's content is removed
    assert len(pages) == 0
    pages.put(ROOM_PAGE, 10, b"page read before", generation)
    assert pages.get(ROOM_PAGE, 10) is None
    pages.put(ROOM_PAGE, 10, b"page read after", pages.generation)
    assert pages.get(ROOM_PAGE, 10) == b"page read after"


def test_the_bytes_kept_are_bounded_the_least_recently_used_going_first():
    pages = PageCache(max_bytes=800)
    for number in range(8):
        pages.put(("room", number, None, 50), 1, bytes(100), pages.generation)
    assert pages.get(("room", 0, None, 50), 1) is not None  # used: the newest now
    pages.put(("room", 8, None, 50), 1, bytes(100), pages.generation)
    assert pages.get(("room", 1, None, 50), 1) is None  # the least recently used went
    assert pages.get(("room", 0, None, 50), 1) is not None and len(pages) == 8
    pages.put(("room", 9, None, 50), 1, bytes(101), pages.generation)  # over an eighth of the bound: not kept
    assert pages.get(("room", 9, None, 50), 1) is None


def test_a_page_put_again_replaces_the_old_one():
    pages = PageCache(max_bytes=800)
    pages.put(ROOM_PAGE, 1, bytes(100), pages.generation)
    pages.put(ROOM_PAGE, 2, bytes(50), pages.generation)
    assert pages.get(ROOM_PAGE, 2) == bytes(50) and pages._bytes == 50


def test_a_zero_ttl_keeps_nothing():
    pages = PageCache(ttl=0)
    pages.put(ROOM_PAGE, 1, b"page", pages.generation)
    assert pages.get(ROOM_PAGE, 1) is None
