"""Quart's plumbing in chat: orjson bodies encoded once, validation through cached adapters, no Flask session,
and the quick coroutine check."""

from __future__ import annotations

import pytest
from quart import session
from quart.sessions import NullSession

from chat import json_io
from chat.schemas import SendMessageIn
from testkit.app import assert_error


async def test_a_json_answer_is_orjson_s_bytes_with_a_newline(client):
    response = await client.get("/healthz")
    body = await response.get_data()
    assert response.mimetype == "application/json"
    assert body.endswith(b"}\n") and b": " not in body  # compact, one line, as before


async def test_validation_uses_one_adapter_per_model(signup):
    alice, _ = await signup("alice")
    json_io._adapter.cache_clear()
    for content in ("", "   "):
        await assert_error(await alice.post("/send-message", json={"receiver_id": 1, "content": content}), 400)
    assert json_io._adapter.cache_info().misses == 1 and json_io._adapter.cache_info().hits == 1
    assert json_io._adapter(SendMessageIn) is json_io._adapter(SendMessageIn)


async def test_there_is_no_flask_style_session(app):
    async with app.test_request_context("/"):
        assert isinstance(session._get_current_object(), NullSession)
        with pytest.raises(RuntimeError):
            session["x"] = 1  # chat keeps no such session: a write is a bug, and says so


async def test_ensure_async_passes_coroutine_functions_through_and_wraps_the_others(app):
    async def coroutine_function() -> int:
        return 1

    def plain() -> int:
        return 2

    assert app.ensure_async(coroutine_function) is coroutine_function
    wrapped = app.ensure_async(plain)
    assert wrapped is not plain and await wrapped() == 2


async def test_only_the_auth_routes_may_sign_in_or_out(app):
    from chat.security import SessionUser

    auth = next(iter(app.extensions["QUART_AUTH"]))
    async with app.test_request_context("/get-users"):
        with pytest.raises(RuntimeError):
            auth.login_user(SessionUser("token"))  # its cookie would never be written
