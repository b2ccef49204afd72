"""chat/socketio_clients.py in process (the protocol itself: tests/system/test_socketio.py)."""

from __future__ import annotations

from quart import request

from chat import create_app


async def test_the_handshake_is_checked_with_the_real_client_address(tmp_path):
    """Engine.IO's environ says REMOTE_ADDR 127.0.0.1 whoever connects: the request that connect checks is made from
    the ASGI scope, whose client is the real one."""
    app = create_app(instance_path=tmp_path / "instance", cookie_secure=False)
    clients = app.extensions["socketio"]
    scope = {
        "type": "websocket",
        "scheme": "wss",
        "path": "/socket.io/",
        "query_string": b"EIO=4&transport=websocket",
        "headers": [(b"host", b"chat.example.org"), (b"cookie", b"chat_session=x"), (b"remote-addr", b"10.9.9.9")],
        "client": ("203.0.113.9", 50123),
        "http_version": "1.1",
    }
    async with app.request_context(clients._handshake_request(scope)):
        assert request.remote_addr == "203.0.113.9"
        assert request.host == "chat.example.org" and request.is_secure
        assert request.cookies["chat_session"] == "x"
