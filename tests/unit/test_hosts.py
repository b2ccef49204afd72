"""CHAT_ALLOWED_HOSTS (issue 11): a request or websocket handshake for a host not listed gets 400 invalid_host,
before anything else looks at it; unset, every host is served."""

from __future__ import annotations

import pytest
from quart.testing.connections import WebsocketResponseError

from chat.config import ConfigError, load_settings
from chat.hosts import host_allowed
from testkit.app import assert_error, started_app

ALLOWED = "Chat.Example.ORG., 127.0.0.1, [::1]:8443, localhost:5000"


def test_the_setting_is_split_lowered_and_checked():
    settings = load_settings({"CHAT_ALLOWED_HOSTS": ALLOWED})
    assert settings.allowed_hosts == ("chat.example.org", "127.0.0.1", "[::1]:8443", "localhost:5000")
    assert load_settings({}).allowed_hosts == ()


@pytest.mark.parametrize(
    "value", ["https://chat.example.org", "chat example.org", "chat.example.org:port", "*.example.org", "a/b", "x:1:2"]
)
def test_a_wrong_host_entry_names_the_variable(value):
    with pytest.raises(ConfigError, match="CHAT_ALLOWED_HOSTS"):
        load_settings({"CHAT_ALLOWED_HOSTS": value})


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("chat.example.org", True),
        ("CHAT.example.org:8443", True),  # a name listed without a port: any port
        ("chat.example.org.", True),
        ("127.0.0.1:5000", True),
        ("[::1]:8443", True),
        ("[::1]:443", False),  # listed with a port: that port only
        ("localhost:5000", True),
        ("localhost", False),
        ("evil.example", False),
        ("chat.example.org.evil.example", False),
        ("chat.example.org\n", False),
        ("chat.example.org:8443\n", False),
        ("", False),  # HTTP/1.0 without a Host header
    ],
)
def test_which_hosts_are_allowed(host, allowed):
    listed = load_settings({"CHAT_ALLOWED_HOSTS": ALLOWED}).allowed_hosts
    assert host_allowed(host, listed) is allowed
    assert host_allowed(host, ()) is True  # unset: any host


async def test_an_unlisted_host_gets_400_over_http_and_before_the_websocket_upgrade(tmp_path):
    async with started_app(tmp_path, allowed_hosts="chat.example.org") as app:
        client = app.test_client()
        assert (await client.get("/healthz", headers={"Host": "chat.example.org"})).status_code == 200
        refused = await client.get("/healthz", headers={"Host": "evil.example"})
        await assert_error(refused, 400, "invalid_host")
        # the check comes before every other (the CSRF check would have said 403 forbidden_origin)
        login = await client.post("/login", json={}, headers={"Host": "evil.example", "Origin": "http://x.example"})
        await assert_error(login, 400, "invalid_host")
        with pytest.raises(WebsocketResponseError) as caught:
            async with client.websocket("/ws/rooms/dm-1-2", headers={"Host": "evil.example"}) as ws:
                await ws.receive()
        await assert_error(caught.value.response, 400, "invalid_host")
