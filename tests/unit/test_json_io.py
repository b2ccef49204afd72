"""Quart's plumbing in chat: orjson bodies encoded once, validation through cached adapters, no Flask session,
and the quick coroutine check."""

from __future__ import annotations

import asyncio

import pytest
from quart import request, session
from quart.sessions import NullSession
from werkzeug.datastructures import Headers
from werkzeug.exceptions import RequestEntityTooLarge, RequestTimeout

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


def _request(body: bytes, max_content_length: int | None = 64) -> json_io.ChatRequest:
    return json_io.ChatRequest(
        "POST",
        "http",
        "/send-message",
        b"",
        Headers({"Content-Length": str(len(body)), "Content-Type": "application/json"}),
        "",
        "1.1",
        max_content_length=max_content_length,
        body_timeout=0.2,
        scope={},
        send_push_promise=None,
    )


async def test_a_whole_body_is_read_without_waiting_and_a_coming_one_within_the_body_timeout(monkeypatch):
    def no_wait_for(*_args, **_kwargs):
        raise AssertionError("a whole body needs no wait_for")

    whole = _request(b'{"a": 1}')
    whole.body.set_result(b'{"a": 1}')
    with monkeypatch.context() as patched:
        patched.setattr(asyncio, "wait_for", no_wait_for)
        assert await whole.get_data() == b'{"a": 1}' and await whole.get_data(as_text=True) == '{"a": 1}'
        assert await whole.get_json() == {"a": 1}
        assert await whole.get_data(cache=False) == b'{"a": 1}' and await whole.get_data() == b""

    coming = _request(b'{"a": 1}')
    coming.body.append(b'{"a"')  # the rest never comes: Quart's 408 after body_timeout
    with pytest.raises(RequestTimeout):
        await coming.get_data()


async def test_an_oversized_body_is_refused_whole_or_not():
    grown = _request(b"x" * 65)
    grown.body.append(b"x" * 65)  # past the limit: the body is marked whole, with its 413
    announced = _request(b"x" * 65)  # its Content-Length over the limit: refused before any byte
    for refused in (grown, announced):
        with pytest.raises(RequestEntityTooLarge):
            await refused.get_data()


async def test_a_requests_blueprints_are_quarts_worked_out_once(app):
    async with app.test_request_context("/get-messages", method="GET"):
        matched = request._get_current_object()
        assert matched.blueprints == ["messaging"] and matched.blueprints is matched.blueprints
        matched.url_rule = None  # as before routing: worked out again
        assert matched.blueprints == []


async def test_a_response_with_nothing_to_convert_skips_quart_schemas_conversion(app, monkeypatch):
    import quart_schema.extension

    converted = []
    convert = quart_schema.extension.convert_response_return_value
    monkeypatch.setattr(
        quart_schema.extension,
        "convert_response_return_value",
        lambda result: converted.append(result) or convert(result),
    )
    async with app.test_request_context("/"):
        for result in ({"a": 1}, ({"a": 1}, 201), [1, 2], app.response_class(b"x")):
            assert isinstance(await app.make_response(result), app.response_class) and converted == []
        created = await app.make_response(({"id": 7}, 201))
        assert created.status_code == 201 and await created.get_data() == b'{"id":7}\n'
        # headers beside a value: quart-schema's conversion, which writes their names in kebab-case
        with_headers = await app.make_response(({"a": 1}, 200, {"retry_after": "5"}))
        assert len(converted) == 1 and with_headers.headers["retry-after"] == "5"
        plain = await app.make_response(("text", 200))  # anything else keeps quart-schema's way
        assert len(converted) == 2 and await plain.get_data() == b"text"
