"""chat/tls.py through Quart's test client: the plain-HTTP redirect (CHAT_HTTPS_PORT) and HSTS (CHAT_HSTS_SECONDS).
tests/system/test_serving.py checks the same against a real hypercorn on the shipped hypercorn.toml."""

from __future__ import annotations

import contextlib

import pytest

from chat import create_app
from chat.config import ConfigError, load_settings


@pytest.fixture
async def make_app(tmp_path):
    """make_app(**settings): one started application (Tortoise allows one per test) with those settings."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**overrides):
            app = create_app(instance_path=tmp_path / "instance", bcrypt_rounds=4, **overrides)
            await stack.enter_async_context(app.test_app())
            return app

        yield start


async def test_without_an_https_port_plain_http_is_served_as_such(make_app):
    """`make run` and `hypercorn --bind HOST:PORT "chat:create_app()"`: nothing else prepared, nothing redirected."""
    client = (await make_app()).test_client()
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert "Strict-Transport-Security" not in response.headers


async def test_with_an_https_port_plain_http_is_redirected_there(make_app):
    client = (await make_app(https_port=8443)).test_client()
    response = await client.get("/get-messages", query_string={"user_id": 2})
    assert response.status_code == 307
    assert response.headers["Location"] == "https://localhost:8443/get-messages?user_id=2"
    assert "Strict-Transport-Security" not in response.headers
    posted = await client.post("/login", json={"username": "a", "password": "b" * 8})
    assert posted.status_code == 307  # before anything reads the password sent in clear
    secure = await client.get("/healthz", scheme="https")
    assert secure.status_code == 200
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000"


async def test_port_443_is_left_out_of_the_redirect(make_app):
    client = (await make_app(https_port=443)).test_client()
    response = await client.get("/login-page")
    assert response.headers["Location"] == "https://localhost/login-page"


async def test_hsts_max_age_is_configurable_and_zero_clears_it(make_app):
    client = (await make_app(hsts_seconds=0)).test_client()
    response = await client.get("/nowhere", scheme="https")
    assert response.status_code == 404  # error responses carry it too
    assert response.headers["Strict-Transport-Security"] == "max-age=0"


@pytest.mark.parametrize(("variable", "value"), [("CHAT_HTTPS_PORT", "0"), ("CHAT_HSTS_SECONDS", "-1")])
def test_bad_values_name_the_variable(variable, value):
    with pytest.raises(ConfigError, match=variable):
        load_settings({variable: value})
