"""The application in process, through Quart's test client (async): started on its own database, API.md's error
body, sign-up and sign-in."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from chat import create_app

from .backends import backend_settings
from .http import PASSWORD

# A message's fields as API.md lists them, spelled out by hand (not read from the code that builds them).
MESSAGE_FIELDS = frozenset(
    {"id", "sender_id", "receiver_id", "room", "content", "timestamp", "client_id"}
    | {"mentions", "edited_at", "deleted", "reply_to", "reactions", "files"}
)
TEST_SETTINGS = {"bcrypt_rounds": 4, "cookie_secure": False, "hash_concurrency": 2}


@contextlib.asynccontextmanager
async def started_app(tmp_path: Path, **overrides) -> AsyncIterator:
    """A fresh application on its own database (for tmp_path, in the configuration under test), started.

    Tortoise's connections are global: start one application per test.
    """
    backend = {key.removeprefix("CHAT_").lower(): value for key, value in backend_settings(tmp_path).items()}
    application = create_app(instance_path=tmp_path / "instance", **{**TEST_SETTINGS, **backend, **overrides})
    async with application.test_app():
        yield application


async def assert_error(response, status: int, error: str | None = None) -> dict:
    """The response is API.md's JSON error body with this status (and code); returns the body."""
    text = await response.get_data(as_text=True)
    assert response.status_code == status, text
    assert response.mimetype == "application/json", text
    body = await response.get_json()
    assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
    if error is not None:
        assert body["error"] == error, body
    return body


async def api_register(client, name: str, password: str = PASSWORD) -> dict:
    response = await client.post(
        "/register", json={"username": name, "email": f"{name}@example.org", "password": password}
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    return await response.get_json()


async def api_login(client, name: str, password: str = PASSWORD) -> dict:
    response = await client.post("/login", json={"username": name, "password": password})
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await response.get_json()
