"""The websocket handler in process (Quart's test client): races a real client cannot time."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from quart.testing.connections import WebsocketDisconnectError, WebsocketResponseError
from quart_auth import current_user

from chat import accounts, conversations, rooms
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
    """Lean sockets: an open, idle socket's handler runs in the task that called the app (the test client's here,
    hypercorn's in a server), with no task of Quart's or chat's besides; there were six per socket (Quart's receiver
    and handler, a writer, a reader, and one waiting for each of overflow and shutdown). And it still works."""
    alice_client, alice = await signup("alice")
    _, bob = await signup("bob")
    room = room_for(alice["id"], bob["id"])
    before = len(_tasks_of_the_app())
    sockets = [alice_client.websocket(f"/ws/rooms/{room}") for _ in range(5)]
    opened = [await socket.__aenter__() for socket in sockets]
    try:
        for ws in opened:
            assert '"presence"' in await asyncio.wait_for(ws.receive(), 5)  # the socket's first frame
        # per socket: the test client's connection, which runs the handler, and the pump that stands in for
        # hypercorn's queue of events under the test client (asgi_websocket._events_of)
        assert (len(_tasks_of_the_app()) - before) / len(opened) <= 2
        await opened[0].send('{"type": "message", "content": "to all five"}')
        for ws in opened:
            assert "to all five" in await asyncio.wait_for(ws.receive(), 5)
    finally:
        for socket in sockets:
            await socket.__aexit__(None, None, None)


async def test_a_socket_ends_when_its_client_goes_whatever_its_handler_was_doing(app, signup, monkeypatch):
    """Nothing cancels a handler when its client goes (a cancellation can be lost below us: seen in CI inside a
    Tortoise query on asyncpg). The disconnect is the last of the socket's events, which its loop takes in turn:
    a client that goes while the handler is busy elsewhere still ends the socket, and its user goes offline."""
    alice_client, alice = await signup("alice")
    _, bob = await signup("bob")
    start = realtime.Connection._start
    busy, cancelled = asyncio.Event(), asyncio.Event()

    async def start_slowly(self, after: int) -> None:
        busy.set()
        try:
            await asyncio.sleep(0.3)  # a slow query, say, when the client goes
        except asyncio.CancelledError:
            cancelled.set()
            raise
        await start(self, after)

    monkeypatch.setattr(realtime.Connection, "_start", start_slowly)
    socket = alice_client.websocket(f"/ws/rooms/{room_for(alice['id'], bob['id'])}")
    await socket.__aenter__()
    await asyncio.wait_for(busy.wait(), 5)
    await asyncio.wait_for(socket.__aexit__(None, None, None), 5)  # the client goes: the handler has ended
    assert not cancelled.is_set()
    assert await app.extensions["chat"].presence.online([alice["id"]]) == set()


async def test_a_replay_stops_once_its_client_has_gone(app, signup, monkeypatch):
    """A client that asks for the whole history and goes at once (a reconnect storm) is not replayed the rest."""
    alice_client, alice = await signup("alice")
    _, bob = await signup("bob")
    for number in range(7):
        response = await alice_client.post("/send-message", json={"receiver_id": bob["id"], "content": f"m{number}"})
        assert response.status_code == 201
    monkeypatch.setattr(realtime, "REPLAY_BATCH", 2)
    frames_after, batches = conversations.frames_after, []
    socket = alice_client.websocket(f"/ws/rooms/{room_for(alice['id'], bob['id'])}?after=0")

    async def client_goes_after_the_first_batch(room, after: int, limit: int, up_to: int | None = None) -> list:
        batch = await frames_after(room, after, limit, up_to)
        batches.append(len(batch))
        if len(batches) == 1:
            await socket.disconnect()
            await asyncio.sleep(0.05)  # the disconnect reaches the socket's events (hypercorn puts it there)
        return batch

    monkeypatch.setattr(conversations, "frames_after", client_goes_after_the_first_batch)
    await socket.__aenter__()
    await asyncio.wait_for(socket.__aexit__(None, None, None), 5)
    assert batches == [2]


class FrameWriter:
    """Stands in for lean_hypercorn.write_now (hypercorn's connection) under the test client: records what a
    socket writes at once, or refuses, as a connection that cannot take a frame without waiting does."""

    def __init__(self) -> None:
        self.takes = True
        self.written: list[str] = []

    def __call__(self, send, message) -> bool:
        if self.takes:
            self.written.append(orjson.loads(message["text"])["message"]["content"])
        return self.takes


async def test_a_waiting_socket_takes_messages_at_once_and_queues_what_its_connection_cannot(app, signup, monkeypatch):
    """Messages published while a socket waits with nothing queued are written at once by the publisher (no wake
    of the socket's task); one its connection cannot take now goes through the queue and the task, as before;
    each message once, in order, whichever way it went. With Redis (events of a room may come out of order across
    workers) every message goes through the task, which fills gaps from the database."""
    writer = FrameWriter()
    monkeypatch.setattr(realtime, "write_now", writer)
    ordered = app.extensions["chat"].broker.ordered
    alice_client, alice = await signup("alice")
    bob_client, bob = await signup("bob")
    received: list[str] = []

    async def send(content: str) -> None:
        response = await bob_client.post("/send-message", json={"receiver_id": alice["id"], "content": content})
        assert response.status_code == 201

    async def receive(ws) -> None:
        received.append(orjson.loads(await asyncio.wait_for(ws.receive(), 5))["message"]["content"])

    async with alice_client.websocket(f"/ws/rooms/{room_for(alice['id'], bob['id'])}") as ws:
        assert '"presence"' in await asyncio.wait_for(ws.receive(), 5)
        await asyncio.sleep(0.05)  # the socket waits
        await send("m1")
        await send("m2")
        writer.takes = False
        await send("m3")
        for _ in range(1 if ordered else 3):
            await receive(ws)
        writer.takes = True
        await asyncio.sleep(0.05)  # the socket's task has taken its queue and waits again
        await send("m4")
        if not ordered:
            await receive(ws)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ws.receive(), 0.3)  # nothing more
    if ordered:
        assert (writer.written, received) == (["m1", "m2", "m4"], ["m3"])
    else:
        assert (writer.written, received) == ([], ["m1", "m2", "m3", "m4"])
