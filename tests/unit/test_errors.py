"""Every failure is API.md's JSON error body: unknown paths, wrong methods, big or malformed bodies."""

from __future__ import annotations

import pytest

from chat.models import User
from testkit.app import api_register, assert_error, started_app

VALID_REGISTRATION = b'{"username": "alice", "email": "alice@example.org", "password": "long enough"}'


async def test_unknown_path_is_a_json_404(client):
    await assert_error(await client.get("/no/such/page"), 404, "not_found")
    await assert_error(await client.post("/no-such-endpoint", json={}), 404, "not_found")


@pytest.mark.parametrize(("method", "path"), [("GET", "/register"), ("PUT", "/send-message"), ("DELETE", "/me")])
async def test_wrong_method_is_a_json_405_with_allow(client, method, path):
    response = await client.open(path, method=method)
    await assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"]


async def test_a_body_over_the_limit_is_413(tmp_path):
    async with started_app(tmp_path, max_body_bytes=4096) as app:
        client = app.test_client()
        padding = "x" * 5000
        response = await client.post(
            "/register", json={"username": "alice", "email": "a@example.org", "password": "long enough", "p": padding}
        )
        await assert_error(response, 413, "payload_too_large")
        assert await User.all().count() == 0
        # just under the limit is read (and refused only for what it says)
        response = await client.post("/register", json={"username": "alice", "email": "a@example.org", "p": "x" * 3000})
        await assert_error(response, 400, "validation_error")


async def test_the_default_limit_refuses_a_megabyte(client):
    body = b'{"username": "alice", "email": "a@example.org", "password": "' + b"x" * 1_000_000 + b'"}'
    response = await client.post("/register", data=body, headers={"Content-Type": "application/json"})
    await assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b'{"username": "alice",}',
        b"not json at all",
        b"",
        b"\xff\xfe{}",
        b'{"username": "al\xffice"}',  # invalid UTF-8
        b"NaN",
    ],
)
async def test_malformed_json_is_400(client, raw):
    response = await client.post("/register", data=raw, headers={"Content-Type": "application/json"})
    body = await assert_error(response, 400)
    assert body["error"] in ("invalid_json", "validation_error")


@pytest.mark.parametrize("raw", [b"[]", b'["alice"]', b'"alice"', b"42", b"null", b"true"])
async def test_non_object_json_is_400(client, raw):
    response = await client.post("/register", data=raw, headers={"Content-Type": "application/json"})
    body = await assert_error(response, 400, "validation_error")
    assert "object" in body["fields"][0]["message"]


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("application/x-www-form-urlencoded", b"username=alice&email=alice%40example.org&password=long+enough"),
        ("text/plain", VALID_REGISTRATION),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="username"\r\n\r\nalice\r\n--x--',
        ),
        (None, VALID_REGISTRATION),
    ],
)
async def test_only_json_bodies_are_accepted(client, content_type, data):
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post("/register", data=data, headers=headers)
    body = await assert_error(response, 400, "invalid_json")
    assert "JSON" in body["message"]
    assert await User.all().count() == 0


async def test_json_with_a_charset_is_accepted(client):
    response = await client.post(
        "/register", data=VALID_REGISTRATION, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("field", "value"),
    [("username", 12345), ("email", ["alice@example.org"]), ("password", {"value": "long enough"}), ("username", True)],
)
async def test_wrong_types_are_validation_errors(client, field, value):
    data = {"username": "alice", "email": "alice@example.org", "password": "long enough", field: value}
    body = await assert_error(await client.post("/register", json=data), 400, "validation_error")
    assert [problem["field"] for problem in body["fields"]] == [field]


async def test_responses_carry_the_security_headers(client):
    for response in (await client.get("/healthz"), await client.get("/missing")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"


async def test_unknown_fields_are_ignored(client):
    data = {"username": "alice", "email": "alice@example.org", "password": "long enough", "admin": True}
    assert (await client.post("/register", json=data)).status_code == 201


async def test_a_foreign_origin_cannot_change_state(signup, client):
    await api_register(client, "alice")
    evil = {"Origin": "https://evil.example"}
    for path, data in [
        ("/register", {"username": "bob", "email": "bob@example.org", "password": "long enough"}),
        ("/login", {"username": "alice", "password": "correct horse battery"}),
        ("/logout", None),
    ]:
        response = await client.post(path, json=data, headers=evil)
        await assert_error(response, 403, "forbidden_origin")
    assert await User.all().count() == 1
    alice, _ = await signup("carol")
    response = await alice.post("/send-message", json={"receiver_id": 1, "content": "hi"}, headers=evil)
    await assert_error(response, 403, "forbidden_origin")
    response = await alice.post("/mark-read", json={"user_id": 1, "up_to": 1}, headers=evil)
    await assert_error(response, 403, "forbidden_origin")
    # reading is not state-changing; the server's own origin may change state
    assert (await alice.get("/get-users", headers=evil)).status_code == 200
    own = {"Origin": "http://localhost"}
    assert (await alice.post("/send-message", json={"receiver_id": 1, "content": "hi"}, headers=own)).status_code == 201


async def test_configured_origins_are_allowed(tmp_path):
    async with started_app(tmp_path, allowed_origins="https://app.example.org") as app:
        client = app.test_client()
        data = {"username": "alice", "email": "alice@example.org", "password": "long enough"}
        ok = await client.post("/register", json=data, headers={"Origin": "https://App.Example.org/"})
        assert ok.status_code == 201
        refused = await client.post("/login", json=data, headers={"Origin": "https://other.example.org"})
        await assert_error(refused, 403, "forbidden_origin")
