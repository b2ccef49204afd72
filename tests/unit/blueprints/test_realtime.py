"""The websocket handler in process (Quart's test client): races a real client cannot time."""

from __future__ import annotations

import asyncio

import pytest
from quart.testing.connections import WebsocketDisconnectError, WebsocketResponseError
from quart_auth import current_user

from chat import accounts, rooms
from chat.blueprints import realtime
from chat.rooms import room_for


async def test_a_logout_racing_the_handshake_still_ends_the_socket(app, signup, monkeypatch):
    """In process: the session is revoked after the handshake checked it, but before the socket listened
    for revocations. The socket must not live on with a revoked session."""
    alice_client, alice = await signup("alice")
    _, bob = await signup("bob")
    check_other = rooms.require_user

    async def logout_meanwhile(user_id: int, **kwargs: bool) -> None:
        await check_other(user_id, **kwargs)
        await accounts.end_session(current_user.auth_id)  # what a concurrent POST /logout does

    monkeypatch.setattr(rooms, "require_user", logout_meanwhile)
    async with alice_client.websocket(f"/ws/rooms/{room_for(alice['id'], bob['id'])}") as ws:
        with pytest.raises((WebsocketResponseError, WebsocketDisconnectError)) as ended:
            await asyncio.wait_for(ws.receive(), 5)
    if isinstance(ended.value, WebsocketResponseError):
        assert ended.value.response.status_code == 401
    else:
        assert ended.value.args == (1008,)


def _tasks_of_the_app() -> list[asyncio.Task]:
    """The running tasks but asyncpg's: its pool hands a connection back in a task of its own, briefly."""
    return [task for task in asyncio.all_tasks() if "/asyncpg/" not in _source_of(task)]


def _source_of(task: asyncio.Task) -> str:
    return getattr(getattr(task.get_coro(), "cr_code", None), "co_filename", "")


async def test_an_idle_socket_costs_one_task_of_its_own(app, signup):
    """Lean sockets: an open, idle socket's handler is one task (the test client's and Quart's receiver besides);
    it was four more (a writer, a reader, and one waiting for each of overflow and shutdown). And it still works."""
    alice_client, alice = await signup("alice")
    _, bob = await signup("bob")
    room = room_for(alice["id"], bob["id"])
    before = len(_tasks_of_the_app())
    sockets = [alice_client.websocket(f"/ws/rooms/{room}") for _ in range(5)]
    opened = [await socket.__aenter__() for socket in sockets]
    try:
        for ws in opened:
            assert '"presence"' in await asyncio.wait_for(ws.receive(), 5)  # the socket's first frame
        # per socket: the test client's connection, Quart's receiver, the handler (the socket's one task)
        assert (len(_tasks_of_the_app()) - before) / len(opened) <= 3
        await opened[0].send('{"type": "message", "content": "to all five"}')
        for ws in opened:
            assert "to all five" in await asyncio.wait_for(ws.receive(), 5)
    finally:
        for socket in sockets:
            await socket.__aexit__(None, None, None)


async def test_a_socket_ends_when_its_client_goes_even_if_the_cancellation_is_lost(app, signup, monkeypatch):
    """A library under the handler can swallow the cancellation Quart sends when the client goes (seen in CI inside
    a Tortoise query on asyncpg): the socket must end all the same, and its user go offline."""
    alice_client, alice = await signup("alice")
    _, bob = await signup("bob")
    start = realtime.Connection._start
    waiting, swallowed = asyncio.Event(), asyncio.Event()

    async def start_swallowing_a_cancellation(self, after: int) -> None:
        waiting.set()
        try:
            await asyncio.sleep(30)  # where the cancellation lands...
        except asyncio.CancelledError:
            swallowed.set()  # ...and is lost, as inside such a library
        await start(self, after)

    monkeypatch.setattr(realtime.Connection, "_start", start_swallowing_a_cancellation)
    socket = alice_client.websocket(f"/ws/rooms/{room_for(alice['id'], bob['id'])}")
    await socket.__aenter__()
    await asyncio.wait_for(waiting.wait(), 5)
    await asyncio.wait_for(socket.__aexit__(None, None, None), 5)  # the client goes: the handler has ended
    assert swallowed.is_set()
    assert await app.extensions["chat"].presence.online([alice["id"]]) == set()
