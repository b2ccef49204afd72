"""Hypothesis: the input validators against their own rules and against what /openapi.json documents
(history paging is tests/unit/test_conversations_paging.py's)."""

from __future__ import annotations

import functools
import re
import string

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from chat.schemas import MAX_ID, LoginIn, MessagesQuery, RegisterIn, SendMessageIn

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
