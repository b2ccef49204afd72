"""/socket.io/: the original application's Socket.IO clients against a real hypercorn, with python-socketio's own
client (API.md, "Socket.IO clients of the original application"; docs/socketio.md).

In the PostgreSQL + Redis configuration the shared server runs two workers: a client's websocket transport lands on
either, and every send path must reach every client on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field

import httpx
import pytest
import socketio
from websockets.asyncio.client import connect

from testkit.backends import BACKEND
from testkit.probes import app_tracebacks
from testkit.servers import Server
from testkit.ws import COOKIE, Person, new_person, recv_until, send_frame

WORKERS = 2 if BACKEND == "postgres" else 1
ALLOWED_ORIGIN = "https://app.example.org"
ACK_TIMEOUT = 10


def server_tracebacks(log: str) -> list[str]:
    """Tracebacks through chat's code or python-socketio's (hypercorn's own, of a client connection still open at
    shutdown - aiohttp keeps polling connections alive - are no fault of the application)."""
    blocks = log.split("Traceback (most recent call last):")[1:]
    return app_tracebacks(log) + [block for block in blocks if "socketio" in block or "engineio" in block]


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    # the burst sends far faster than a person: lift the per-user send limit and frame pace
    env = {"CHAT_ALLOWED_ORIGINS": ALLOWED_ORIGIN, "CHAT_SEND_LIMIT": "1000000", "CHAT_WS_FRAME_RATE": "1000000"}
    srv = Server(workdir=tmp_path_factory.mktemp("socketio"), env=env, workers=WORKERS).start()
    yield srv
    srv.stop()
    assert not server_tracebacks(srv.log()), srv.log()


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    """One worker with the default limits: long-polling (which needs sticky sessions past one worker) and floods."""
    srv = Server(workdir=tmp_path_factory.mktemp("socketio-one")).start()
    yield srv
    srv.stop()
    assert not server_tracebacks(srv.log()), srv.log()


@dataclass
class Peer:
    """A python-socketio client signed in as `person`, with every `message` event it received."""

    person: Person
    client: socketio.AsyncClient = field(default_factory=lambda: socketio.AsyncClient(reconnection=False))
    messages: list[dict] = field(default_factory=list)
    gone: asyncio.Event = field(default_factory=asyncio.Event)

    async def connect(self, transports=("websocket",), origin: str | None = None, cookie: bool = True) -> Peer:
        self.client.on("message", self.messages.append)
        self.client.on("disconnect", lambda *reason: self.gone.set())
        headers = {"Cookie": f"{COOKIE}={self.person.cookie}"} if cookie else {}
        if origin is not None:
            headers["Origin"] = origin
        await self.client.connect(
            self.person.server.base_url, headers=headers, transports=list(transports), wait_timeout=10
        )
        return self

    async def call(self, event: str, *data: object) -> object:
        return await self.client.call(event, data[0] if len(data) == 1 else data, timeout=ACK_TIMEOUT)

    async def join(self, other: Person) -> dict:
        return await self.call("join", {"room": self.person.room_with(other)})

    async def wait_for(self, count: int, timeout: float = 15) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.messages

    async def close(self) -> None:
        # python-socketio's polling client waits for its last poll, which the server ends only at the next ping
        # (25 s): the server has let go of the client by then, and the test need not wait for it
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.disconnect(), 3)


@pytest.fixture
async def peers():
    """peers(person, ...) -> a connected Peer; every one is disconnected after the test."""
    made: list[Peer] = []

    async def make(person: Person, **kwargs) -> Peer:
        peer = Peer(person)
        made.append(peer)
        return await peer.connect(**kwargs)

    yield make
    for peer in made:
        await peer.close()


def pair(server: Server) -> tuple[Person, Person]:
    return new_person(server, "sio"), new_person(server, "sio")


async def test_the_original_applications_event_sequence(shared_server, peers):
    alice, bob = pair(shared_server)
    a, b = await peers(alice), await peers(bob)
    room = alice.room_with(bob)
    assert await a.join(bob) == {"ok": True, "room": room}
    assert await b.join(alice) == {"ok": True, "room": room}

    client_id = uuid.uuid4().hex
    ack = await a.call("message", {"room": room, "content": "hello from the old client", "client_id": client_id})
    assert ack["content"] == "hello from the old client" and ack["client_id"] == client_id and ack["room"] == room
    assert ack["sender_id"] == alice.id and ack["receiver_id"] == bob.id
    assert await b.wait_for(1) == [ack]
    assert await a.wait_for(1) == [ack]  # echoed to the sender, as the original emitted to the room

    # a repeated client_id stores nothing and is acknowledged with the first message; the others hear nothing new
    again = await a.call("message", {"room": room, "content": "hello from the old client", "client_id": client_id})
    assert again == ack
    await asyncio.sleep(0.5)
    assert b.messages == [ack] and a.messages == [ack]
    assert alice.stored_ids(bob) == [ack["id"]]


async def test_sends_cross_between_socketio_websockets_and_http(shared_server, peers):
    alice, bob = pair(shared_server)
    room = alice.room_with(bob)
    a = await peers(alice)
    assert (await a.join(bob))["ok"]
    async with bob.connect(room) as ws:
        await recv_until(ws, lambda frame: frame["type"] == "presence")
        # Socket.IO -> the websocket and the history
        sent = await a.call("message", {"room": room, "content": "from socket.io"})
        frame = await recv_until(ws, lambda frame: frame["type"] == "message")
        assert frame["message"] == sent
        # the websocket -> Socket.IO
        await ws.send(send_frame("from the websocket", "ws-1"))
        echo = await recv_until(ws, lambda frame: frame["type"] == "message")
        # HTTP -> Socket.IO
        http = bob.http.post("/send-message", json={"receiver_id": alice.id, "content": "from http"}).json()
        assert [m["id"] for m in await a.wait_for(3)] == [sent["id"], echo["message"]["id"], http["id"]]
    await asyncio.sleep(0.5)
    assert [m["content"] for m in a.messages] == ["from socket.io", "from the websocket", "from http"]
    assert alice.stored_ids(bob) == [m["id"] for m in a.messages]


async def test_a_burst_of_mixed_sends_reaches_every_socketio_client_once_in_order(shared_server, peers):
    """500 messages sent at once over HTTP, /ws/rooms and Socket.IO reach each of several Socket.IO clients (on
    both workers when there are two) once each, in id order, and equal what is stored."""
    alice, bob = pair(shared_server)
    room = alice.room_with(bob)
    listeners = [await peers(person) for person in (alice, bob, bob, bob)]
    for listener in listeners:
        other = bob if listener.person is alice else alice
        assert (await listener.join(other))["ok"]
    sender = await peers(alice)

    async def over_http(count: int) -> None:
        async with alice.async_http() as http:
            for i in range(count):
                response = await http.post("/send-message", json={"receiver_id": bob.id, "content": f"http {i}"})
                assert response.status_code == 201

    async def over_websocket(count: int) -> None:
        async with alice.connect(room) as ws:
            for i in range(count):
                await ws.send(send_frame(f"ws {i}", f"burst-ws-{i}"))
            await recv_until(ws, lambda f: f.get("message", {}).get("client_id") == f"burst-ws-{count - 1}", 60)

    async def over_socketio(count: int) -> None:
        for i in range(count):
            ack = await sender.call("message", {"room": room, "content": f"sio {i}", "client_id": f"burst-sio-{i}"})
            assert ack["content"] == f"sio {i}", ack

    await asyncio.gather(over_http(170), over_websocket(165), over_socketio(165))
    stored = alice.stored_ids(bob)
    assert len(stored) == 500
    for listener in listeners:
        received = [m["id"] for m in await listener.wait_for(500, timeout=60)]
        assert received == stored, (len(received), len(set(received)))
    await asyncio.sleep(0.5)
    assert all(len(listener.messages) == 500 for listener in listeners)


async def test_no_session_a_foreign_origin_or_a_foreign_room_is_refused(shared_server, peers):
    alice, bob = pair(shared_server)
    carol = new_person(shared_server, "sio")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await peers(alice, cookie=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await peers(alice, origin="https://evil.example")
    allowed = await peers(alice, origin=ALLOWED_ORIGIN)  # CHAT_ALLOWED_ORIGINS, as for /ws/rooms
    assert (await allowed.join(bob))["ok"]

    intruder = await peers(carol)
    foreign = alice.room_with(bob)
    assert await intruder.call("join", {"room": foreign}) == {
        "ok": False,
        "error": "forbidden",
        "message": "You are not a participant of this room.",
    }
    refused = await intruder.call("message", {"room": foreign, "content": "let me in"})
    assert refused["ok"] is False and refused["error"] == "forbidden"
    assert (await intruder.call("join", {"room": "dm-2-1"}))["error"] == "room_not_found"
    assert (await intruder.call("join", {"room": f"dm-{carol.id}-2147483000"}))["error"] == "user_not_found"
    await asyncio.sleep(0.3)
    assert intruder.messages == [] and alice.stored_ids(bob) == []


async def test_a_logout_disconnects_within_a_second(shared_server, peers):
    alice, bob = pair(shared_server)
    a = await peers(alice)
    assert (await a.join(bob))["ok"]
    assert alice.http.post("/logout").status_code == 204
    began = time.monotonic()
    await asyncio.wait_for(a.gone.wait(), 1.0)
    assert time.monotonic() - began < 1.0


async def test_a_socketio_connection_counts_for_presence(shared_server, peers):
    alice, bob = pair(shared_server)
    assert not bob.online(alice)
    a = await peers(alice)
    assert bob.online(alice)
    await a.close()
    deadline = time.monotonic() + 5
    while bob.online(alice) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not bob.online(alice)


async def test_leave_stops_delivery(shared_server, peers):
    alice, bob = pair(shared_server)
    b = await peers(bob)
    room = bob.room_with(alice)
    assert (await b.join(alice))["ok"]
    assert await b.call("leave", {"room": room}) == {"ok": True, "room": room}
    alice.http.post("/send-message", json={"receiver_id": bob.id, "content": "while away"})
    await asyncio.sleep(0.5)
    assert b.messages == []
    assert (await b.join(alice))["ok"]
    later = alice.http.post("/send-message", json={"receiver_id": bob.id, "content": "back"}).json()
    assert await b.wait_for(1) == [later]


async def test_bad_input_is_answered_with_an_error_ack(shared_server, peers):
    alice, bob = pair(shared_server)
    a = await peers(alice)
    room = alice.room_with(bob)
    cases = [
        ("message", {"room": room, "content": 5}, "validation_error"),
        ("message", {"room": room, "content": "   "}, "validation_error"),
        ("message", {"room": room, "content": "x" * 4001}, "validation_error"),
        ("message", {"room": room, "content": "hi", "client_id": "c" * 65}, "validation_error"),
        ("message", {"room": room, "content": "nul \x00"}, "validation_error"),
        ("message", {"room": 7, "content": "hi"}, "validation_error"),
        ("message", ["not", "an", "object"], "validation_error"),
        ("message", "text", "validation_error"),
        ("message", {"room": room, "content": "y" * 20_000}, "frame_too_large"),
        ("join", {"room": None}, "validation_error"),
        ("join", {"room": "x" * 65}, "validation_error"),
        ("join", {"room": "dm-1-1\n"}, "room_not_found"),
        ("join", {}, "validation_error"),
        ("leave", 3, "validation_error"),
        ("typing", {"room": room}, "unknown_event"),
    ]
    for event, data, error in cases:
        ack = await a.call(event, data)
        assert ack["ok"] is False and ack["error"] == error, (event, data, ack)
    ack = await a.call("message", {"room": room, "content": ""})
    assert ack["fields"] == [{"field": "content", "message": "String should have at least 1 character"}], ack
    # no argument, or two
    assert (await a.client.call("join", timeout=ACK_TIMEOUT))["error"] == "validation_error"
    assert (await a.call("join", {"room": room}, {"room": room}))["error"] == "validation_error"
    assert alice.stored_ids(bob) == []
    assert (await a.join(bob))["ok"]  # still connected and served


async def test_undecodable_packets_and_huge_payloads_end_the_client_quietly(shared_server):
    """Raw Engine.IO packets that python-socketio cannot decode, and one past the packet limit: the client is
    disconnected, the server logs no traceback (the module fixture checks its log)."""
    alice = new_person(shared_server, "sio")
    url = shared_server.ws_url + "/socket.io/?EIO=4&transport=websocket"
    headers = {"Cookie": f"{COOKIE}={alice.cookie}"}
    for bad in ['42["message"', "42{}", "4x", "49", '42[{"a": 1}]', "41/nowhere,", "4" + "2" * 10, "x" * 70_000]:
        async with connect(url, additional_headers=headers, origin=shared_server.base_url) as ws:
            assert (await ws.recv()).startswith("0{")
            await ws.send("40")
            assert (await ws.recv()).startswith("40{")
            await ws.send(bad)
            with contextlib.suppress(Exception):  # a packet it ignores leaves the connection open: fine too
                async with asyncio.timeout(3):
                    while await ws.recv() != "1":  # Engine.IO's close packet: a real client then closes
                        pass
    # the server still serves
    async with httpx.AsyncClient(base_url=shared_server.base_url) as http:
        assert (await http.get("/healthz")).status_code == 200


async def test_long_polling_works_with_one_worker(one_worker, peers):
    alice, bob = pair(one_worker)
    a = await peers(alice, transports=("polling",))
    b = await peers(bob, transports=("polling",))
    assert a.client.transport() == "polling"
    assert (await a.join(bob))["ok"] and (await b.join(alice))["ok"]
    sent = await a.call("message", {"room": alice.room_with(bob), "content": "polled"})
    http = alice.http.post("/send-message", json={"receiver_id": bob.id, "content": "polled too"}).json()
    assert await b.wait_for(2) == [sent, http]


async def test_a_flooding_client_is_held_to_the_frame_budget_then_disconnected(one_worker, peers):
    alice, bob = pair(one_worker)
    a = await peers(alice)
    acks: list[dict] = []
    room = alice.room_with(bob)
    for _ in range(400):  # far past CHAT_WS_FRAME_BURST (60) at once
        await a.client.emit("leave", {"room": room}, callback=acks.append)
    await asyncio.wait_for(a.gone.wait(), 10)
    errors = {ack.get("error") for ack in acks}
    assert "too_many_frames" in errors
    assert len(acks) < 400  # the flood was cut, not read to its end
    # the user's next connection is served
    again = await peers(alice)
    assert (await again.join(bob))["ok"]


async def test_socketio_can_be_switched_off(tmp_path):
    srv = Server(workdir=tmp_path, env={"CHAT_SOCKETIO": "false"}).start()
    try:
        response = httpx.get(srv.base_url + "/socket.io/?EIO=4&transport=polling")
        assert response.status_code == 404
        assert json.loads(response.text)["error"] == "not_found"
    finally:
        srv.stop()


async def test_a_client_that_does_not_read_is_disconnected_not_queued_for(shared_server):
    """A raw Engine.IO websocket that joins a room, then stops reading while thousands of large messages are sent
    to it: the server's queue for it is bounded, and it is disconnected (the user goes offline)."""
    alice, bob = pair(shared_server)
    url = shared_server.ws_url + "/socket.io/?EIO=4&transport=websocket"
    headers = {"Cookie": f"{COOKIE}={alice.cookie}"}
    # max_queue=1: the client library stops reading the socket at once, so TCP fills and the server must hold back
    async with connect(url, additional_headers=headers, origin=shared_server.base_url, max_queue=1) as ws:
        assert (await ws.recv()).startswith("0{")
        await ws.send("40")
        assert (await ws.recv()).startswith("40{")
        await ws.send('421["join",' + json.dumps({"room": alice.room_with(bob)}) + "]")
        assert json.loads((await ws.recv()).removeprefix("431")) == [{"ok": True, "room": alice.room_with(bob)}]
        assert bob.online(alice)
        content = "z" * 4000
        async with bob.async_http() as http:

            async def alice_online() -> bool:
                users = (await http.get("/get-users")).json()["users"]
                return next(user["online"] for user in users if user["id"] == alice.id)

            async def send(count: int) -> None:
                response = await http.post("/send-message", json={"receiver_id": alice.id, "content": content})
                assert response.status_code == 201

            sent = 0
            while sent < 5000 and await alice_online():  # 20 MB: far past what TCP buffers hold
                await asyncio.gather(*(send(1) for _ in range(50)))
                sent += 50
            deadline = time.monotonic() + 30
            while await alice_online() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert not await alice_online(), sent


async def test_socketio_connections_count_against_the_socket_limits(one_worker, peers):
    """CHAT_WS_PER_SESSION (10): Socket.IO connections and websockets of a session count together."""
    alice, bob = pair(one_worker)
    async with alice.connect(alice.room_with(bob)):
        first = [await peers(alice) for _ in range(9)]
        with pytest.raises(socketio.exceptions.ConnectionError):
            await peers(alice)
        await first[0].close()
        await asyncio.sleep(0.2)
        assert (await (await peers(alice)).join(bob))["ok"]


async def test_channels_work_over_socketio_and_a_removed_member_hears_no_more(shared_server, peers):
    owner, member, outsider = (
        new_person(shared_server, "sio"),
        new_person(shared_server, "sio"),
        new_person(shared_server, "sio"),
    )
    created = owner.http.post("/rooms", json={"name": f"sio-{uuid.uuid4().hex[:8]}", "member_ids": [member.id]})
    room = created.json()["room"]
    o, m, x = await peers(owner), await peers(member), await peers(outsider)
    assert await o.call("join", {"room": room}) == {"ok": True, "room": room}
    assert await m.call("join", {"room": room}) == {"ok": True, "room": room}
    refused = await x.call("join", {"room": room})
    assert refused["ok"] is False and refused["error"] == "forbidden"
    refused = await x.call("message", {"room": room, "content": "let me in"})
    assert refused["ok"] is False and refused["error"] == "forbidden"

    # Socket.IO -> the channel's members, on HTTP and Socket.IO alike
    sent = await m.call("message", {"room": room, "content": "hi @" + owner.user["username"]})
    assert sent["room"] == room and sent["receiver_id"] is None and sent["mentions"] == [owner.id]
    http = owner.http.post("/send-message", json={"room": room, "content": "from http"}).json()
    assert [msg["id"] for msg in await m.wait_for(2)] == [sent["id"], http["id"]]
    assert [msg["id"] for msg in await o.wait_for(2)] == [sent["id"], http["id"]]

    # removed: no more delivery to that member, and joining again is refused
    assert owner.http.delete(f"/rooms/{room}/members/{member.id}").status_code == 204
    await asyncio.sleep(0.5)
    after = owner.http.post("/send-message", json={"room": room, "content": "after the removal"}).json()
    assert [msg["id"] for msg in await o.wait_for(3)] == [sent["id"], http["id"], after["id"]]
    await asyncio.sleep(0.5)
    assert [msg["id"] for msg in m.messages] == [sent["id"], http["id"]]
    assert (await m.call("join", {"room": room}))["error"] == "forbidden"
    assert (await m.call("message", {"room": room, "content": "still here?"}))["error"] == "forbidden"
