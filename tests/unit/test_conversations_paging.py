"""Hypothesis: history paging (conversations.history) against a model of it, for random conversations and cursors."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat import conversations
from chat.models import User
from testkit.app import started_app


@pytest.fixture(scope="module")
def paging_app(tmp_path_factory):
    """One started application for every example (each example writes its own conversation), on a loop
    of its own: hypothesis drives plain functions, and each example runs its coroutine on this loop."""
    loop = asyncio.new_event_loop()
    context = started_app(tmp_path_factory.mktemp("paging"))
    app = loop.run_until_complete(context.__aenter__())
    yield app, loop
    loop.run_until_complete(context.__aexit__(None, None, None))
    loop.close()


_people = itertools.count()


async def new_user() -> int:
    number = next(_people)
    user = await User.create(
        username=f"p{number}", username_key=f"p{number}", email=f"p{number}@example.org", password_hash="-"
    )
    return user.id


async def write_conversation(app, senders: list[str]) -> tuple[int, int, list[int]]:
    """A conversation of a and b, interleaved with messages of a third person to each (which no page of
    a and b may show); returns a, b and the ids of their conversation, in the order they were sent."""
    a, b, c = await new_user(), await new_user(), await new_user()
    people = {"a": (a, b), "b": (b, a), "c->a": (c, a), "c->b": (c, b)}
    ids = []
    async with app.app_context():
        for index, who in enumerate(senders):
            sender, receiver = people[who]
            message, created = await conversations.send_message(sender, receiver, f"m{index}", None)
            assert created
            if who in ("a", "b"):
                ids.append(message["id"])
    return a, b, ids


async def page(me: int, other: int, **cursor) -> tuple[list[int], bool]:
    messages, has_more = await conversations.history(me, other, **cursor)
    assert all(m["room"] == f"dm-{min(me, other)}-{max(me, other)}" for m in messages)
    return [m["id"] for m in messages], has_more


PAGING = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PAGING
@given(
    senders=st.lists(st.sampled_from(["a", "b", "c->a", "c->b"]), max_size=40),
    limit=st.integers(1, 12),
    cursor=st.integers(0, 60),
    reader=st.sampled_from(["a", "b"]),
)
def test_history_pages_are_contiguous_ordered_and_say_when_more_remain(paging_app, senders, limit, cursor, reader):
    app, loop = paging_app

    async def check() -> None:
        async with app.app_context():  # history() finds the app's services through it
            await check_pages()

    async def check_pages() -> None:
        a, b, ids = await write_conversation(app, senders)
        me, other = (a, b) if reader == "a" else (b, a)
        assert ids == sorted(ids)  # ids grow with every stored message
        at = ids[0] - 1 + cursor if ids else cursor  # cursors around and inside the conversation

        # one page in each shape, against the model
        older, newer = [i for i in ids if i < at], [i for i in ids if i > at]
        assert await page(me, other, limit=limit) == (ids[-limit:], len(ids) > limit)
        assert await page(me, other, before=at, limit=limit) == (older[-limit:], len(older) > limit)
        assert await page(me, other, after=at, limit=limit) == (newer[:limit], len(newer) > limit)

        # walking backwards from the newest page, and forwards from the start, meets every message once
        backwards, more = await page(me, other, limit=limit)
        walked = list(backwards)
        while more:
            backwards, more = await page(me, other, before=walked[0], limit=limit)
            assert backwards, "has_more promised a page that is empty"
            walked = backwards + walked
        assert walked == ids
        forwards, walked, more = [], [], True
        while more:
            forwards, more = await page(me, other, after=walked[-1] if walked else 0, limit=limit)
            walked += forwards
        assert walked == ids

    loop.run_until_complete(check())
