"""chat/socketio_clients.py in process (the protocol itself: tests/system/test_socketio.py)."""

from __future__ import annotations

import asyncio

from quart import request

from chat import create_app
from chat.rooms import Room
from chat.socketio_clients import Client, RoomFeed


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


async def test_a_disconnect_ends_a_feed_whose_cancellation_is_lost(app):
    """A cancellation that lands as a database query completes can be lost below us (seen with websockets in CI):
    the client's disconnect must still end its feeds, release them and take the user offline."""
    clients = app.extensions["socketio"]
    app_state = app.extensions["chat"]
    lost = asyncio.Event()

    async def a_feed_that_loses_one_cancellation() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            lost.set()  # as inside such a library: the feed goes on waiting for events
        await asyncio.sleep(30)

    subscription = await app_state.broker.subscribe(("room:x",), 8)
    revocation = await app_state.broker.subscribe(("session:x",), 8)
    client = Client("sid", 1, 1, "127.0.0.1", app_state.sockets.admit(1, 1), revocation)
    client.feeds["x"] = RoomFeed(Room.direct(1, 2), subscription)
    client.feeds["x"].task = asyncio.create_task(a_feed_that_loses_one_cancellation())
    clients.clients["sid"] = client
    await app_state.presence.connect(1)
    await asyncio.sleep(0)
    await asyncio.wait_for(clients.on_disconnect("sid"), 5)
    assert lost.is_set() and client.feeds["x"].task.cancelled()
    assert await app_state.presence.online([1]) == set()
