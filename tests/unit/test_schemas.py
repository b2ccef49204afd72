"""Hypothesis: the input validators against their own rules and against what /openapi.json documents, and
history paging (conversations.history) against a model of it, for random conversations and cursors."""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from chat import conversations
from chat.models import User
from chat.schemas import MAX_ID, LoginIn, MessagesQuery, RegisterIn, SendMessageIn

from .support import started_app

PROPERTIES = settings(max_examples=300, deadline=None, derandomize=True, database=None)
# any code point but lone surrogates (which no JSON parser hands over as text), with the awkward ones weighted in
AWKWARD = "\x00\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2028\u3000\ufeffİ@._-"
TEXT = st.text(st.sampled_from(AWKWARD) | st.characters(exclude_categories=["Cs"]), max_size=140)
ASCII_NAME = st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=90)


@functools.cache
def documented_pattern(model, field: str) -> re.Pattern:
    """The `pattern` that /openapi.json shows for a field (written in the syntax Python's re shares)."""
    schema = model.model_json_schema()["properties"][field]
    for option in [schema, *schema.get("anyOf", [])]:
        if "pattern" in option:
            return re.compile(option["pattern"])
    raise AssertionError(f"{model.__name__}.{field} documents no pattern")


def accepts(model, **data) -> bool:
    try:
        model.model_validate(data)
    except ValidationError:
        return False
    return True


REGISTER = {"username": "alice", "email": "alice@example.org", "password": "long enough"}


@PROPERTIES
@given(st.one_of(TEXT, ASCII_NAME))
def test_usernames_are_accepted_exactly_as_documented(name):
    accepted = accepts(RegisterIn, **{**REGISTER, "username": name})
    assert accepted == bool(re.fullmatch(r"[A-Za-z0-9._-]{3,80}", name))
    assert accepted == bool(documented_pattern(RegisterIn, "username").search(name))


@PROPERTIES
@given(TEXT, TEXT, st.sampled_from(["example.org", "x.co", "İ.tr", "a\x1cb.c"]))
def test_emails_are_accepted_as_documented_and_stored_lower_cased(local, middle, domain):
    email = f"{local}@{middle}{domain}"[:130]
    documented = bool(documented_pattern(RegisterIn, "email").search(email)) and len(email) <= 120
    try:
        stored = RegisterIn.model_validate({**REGISTER, "email": email}).email
    except ValidationError:
        # the one rule a pattern cannot say: lower-casing may lengthen an address past 120 characters
        assert not documented or len(email.lower()) > 120, email
        return
    assert documented, email
    assert stored == email.lower() and len(stored) <= 120


@PROPERTIES
@given(TEXT)
def test_passwords_are_kept_exactly_as_typed(password):
    try:
        kept = RegisterIn.model_validate({**REGISTER, "password": password}).password
    except ValidationError:
        assert not 8 <= len(password) <= 128 or "\x00" in password
        return
    assert kept == password  # never trimmed, folded or truncated
    assert documented_pattern(RegisterIn, "password").search(password)


@PROPERTIES
@given(TEXT)
def test_content_needs_something_besides_spaces(content):
    accepted = accepts(SendMessageIn, receiver_id=1, content=content)
    assert accepted == (bool(content.strip()) and "\x00" not in content and len(content) <= 4000)
    assert accepted == bool(documented_pattern(SendMessageIn, "content").search(content))


@PROPERTIES
@given(
    st.one_of(
        st.integers(),
        st.floats(allow_nan=False),
        st.booleans(),
        st.text(max_size=12),
        st.none(),
        st.lists(st.integers(), max_size=2),
    )
)
def test_ids_are_whole_numbers_in_range(value):
    in_range = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and float(value).is_integer()
        and 1 <= value <= MAX_ID
    )
    try:
        receiver = SendMessageIn.model_validate({"receiver_id": value, "content": "hi"}).receiver_id
    except ValidationError:
        assert not in_range, value
        return
    assert in_range and receiver == value and type(receiver) is int


@PROPERTIES
@given(st.one_of(st.none(), TEXT), st.one_of(st.none(), TEXT))
def test_login_needs_an_email_or_a_username(email, username):
    data = {key: value for key, value in {"email": email, "username": username}.items() if value is not None}
    accepted = accepts(LoginIn, password="whatever", **data)
    assert accepted == (
        bool(data) and all("\x00" not in v and len(v) <= (120, 80)[k == "username"] for k, v in data.items())
    )


@PROPERTIES
@given(st.dictionaries(st.sampled_from(["user_id", "before", "after", "limit"]), st.integers(-5, 2**32), max_size=4))
def test_history_queries_take_one_cursor_at_most(query):
    accepted = accepts(MessagesQuery, **query)
    valid = (
        1 <= query.get("user_id", 0) <= MAX_ID
        and all(0 <= query[cursor] <= MAX_ID for cursor in ("before", "after") if cursor in query)
        and 1 <= query.get("limit", 50) <= 200
        and not ("before" in query and "after" in query)
    )
    assert accepted == valid


# ---------------------------------------------------------------- history paging


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
