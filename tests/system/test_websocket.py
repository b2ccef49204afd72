"""The websocket `/ws/rooms/<room>` against a real hypercorn process, with a real websocket client.

Most tests share one server (fresh accounts each); those that stop the server or need other options start
their own. No test sleeps for a fixed time: each waits for the frame (or state) it expects, with a timeout.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from testkit.http import login
from testkit.probes import app_tracebacks
from testkit.servers import Server
from testkit.ws import (
    Person,
    RawWebsocket,
    ResumingClient,
    message_frame,
    new_person,
    presence_frame,
    recv_frame,
    recv_until,
    refusal,
    send_frame,
    wait_for,
)

ALLOWED_ORIGIN = "https://app.example.org"


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    # the volume tests send far faster than a person: lift the per-user send limit and frame pace
    env = {"CHAT_ALLOWED_ORIGINS": ALLOWED_ORIGIN, "CHAT_SEND_LIMIT": "1000000", "CHAT_WS_FRAME_RATE": "1000000"}
    srv = Server(workdir=tmp_path_factory.mktemp("realtime"), env=env).start()
    yield srv
    srv.stop()
    assert not app_tracebacks(srv.log()), srv.log()


@pytest.fixture
def person():
    """person(server, name) -> a fresh signed-in Person; their HTTP connections close after the test."""
    people: list[Person] = []

    def make(server: Server, name: str) -> Person:
        people.append(new_person(server, name))
        return people[-1]

    yield make
    for someone in people:
        someone.http.close()


@pytest.fixture
def pair(shared_server, person) -> tuple[Person, Person]:
    return person(shared_server, "alice"), person(shared_server, "bob")


# ---------------------------------------------------------------- chatting


async def test_two_users_chat_both_ways(pair):
    alice, bob = pair
    room = alice.room_with(bob)
    async with alice.connect(room) as a_ws, bob.connect(room) as b_ws:
        # every socket is first told the other participant's state
        assert await recv_frame(a_ws) == {"type": "presence", "user_id": bob.id, "online": False}
        await recv_until(a_ws, presence_frame(bob.id, True))
        assert await recv_frame(b_ws) == {"type": "presence", "user_id": alice.id, "online": True}

        await a_ws.send(send_frame("hi bob", "a-1"))
        echo = (await recv_until(a_ws, message_frame("hi bob")))["message"]
        assert echo["client_id"] == "a-1"  # the acknowledgement
        assert (echo["sender_id"], echo["receiver_id"], echo["room"]) == (alice.id, bob.id, room)
        assert (await recv_until(b_ws, message_frame("hi bob")))["message"] == echo

        await b_ws.send(send_frame("hi alice"))
        reply = (await recv_until(b_ws, message_frame("hi alice")))["message"]
        assert reply["client_id"] is None and reply["sender_id"] == bob.id and reply["id"] > echo["id"]
        assert (await recv_until(a_ws, message_frame("hi alice")))["message"] == reply

    stored = alice.http.get("/get-messages", params={"user_id": bob.id}).json()["messages"]
    assert stored == [echo, reply]


async def test_permessage_deflate_offered_like_a_browser_is_declined_and_plain_frames_flow(pair):
    """A zlib compressor per socket cost ~100 KiB of every idle browser socket (chat/lean_hypercorn.py, point 3)."""
    alice, bob = pair
    room = alice.room_with(bob)
    async with alice.connect(room, compression="deflate") as a_ws, bob.connect(room, compression="deflate") as b_ws:
        assert "Sec-WebSocket-Extensions" not in a_ws.response.headers
        await recv_until(a_ws, presence_frame(bob.id, True))
        await a_ws.send(send_frame("plain " * 200, "deflate-1"))
        echo = (await recv_until(b_ws, message_frame("plain " * 200)))["message"]
        assert echo["client_id"] == "deflate-1"


async def test_http_send_reaches_every_socket_of_the_room(pair):
    alice, bob = pair
    room = alice.room_with(bob)
    async with alice.connect(room) as tab1, alice.connect(room) as tab2, bob.connect(room) as b_ws:
        response = alice.http.post(
            "/send-message", json={"receiver_id": bob.id, "content": "over http", "client_id": "h1"}
        )
        assert response.status_code == 201
        sent = response.json()
        for ws in (tab1, tab2, b_ws):  # the sender's other tab too
            assert (await recv_until(ws, message_frame("over http")))["message"] == sent

        # a repeated client_id stores and publishes nothing: the next frame on every socket is the next message
        again = alice.http.post(
            "/send-message", json={"receiver_id": bob.id, "content": "over http", "client_id": "h1"}
        )
        assert again.status_code == 200 and again.json() == sent
        bob.http.post("/send-message", json={"receiver_id": alice.id, "content": "next"})
        for ws in (tab1, tab2, b_ws):
            seen: list[dict] = []
            await recv_until(ws, message_frame("next"), seen=seen)
            assert [f for f in seen if f["type"] == "message"] == [seen[-1]]
    assert len(alice.stored_ids(bob)) == 2


async def test_a_repeated_client_id_over_the_socket_is_acknowledged_once_stored(pair):
    alice, bob = pair
    room = alice.room_with(bob)
    # the first attempt went over HTTP (its answer was lost) before this socket opened
    first = alice.http.post("/send-message", json={"receiver_id": bob.id, "content": "once", "client_id": "dup-1"})
    assert first.status_code == 201
    async with alice.connect(room) as ws:
        await ws.send(send_frame("once", "dup-1"))
        ack = await recv_until(ws, message_frame(client_id="dup-1"))
        assert ack["message"] == first.json()
        # and repeated on the same socket: no second message, no second delivery
        await ws.send(send_frame("once", "dup-1"))
        await ws.send(send_frame("twice", "dup-2"))
        seen: list[dict] = []
        await recv_until(ws, message_frame(client_id="dup-2"), seen=seen)
        assert [f["message"]["client_id"] for f in seen if f["type"] == "message"] == ["dup-2"]
    assert len(alice.stored_ids(bob)) == 2


# ---------------------------------------------------------------- admission


async def test_refused_before_the_upgrade(shared_server, pair, person):
    alice, bob = pair
    carol = person(shared_server, "carol")
    room = alice.room_with(bob)

    async def status(path: str, cookie: str | None, origin: str | None = None) -> tuple[int, str]:
        code, body = await refusal(shared_server, path, cookie, origin)
        assert set(body) >= {"error", "message"}, body
        return code, body["error"]

    assert await status(f"/ws/rooms/{room}", carol.cookie) == (403, "forbidden")  # not a participant
    assert await status(f"/ws/rooms/{room}", alice.cookie, origin="https://evil.example") == (403, "forbidden_origin")
    assert await status(f"/ws/rooms/{room}", None) == (401, "unauthorized")
    assert await status(f"/ws/rooms/{room}", "not-a-signed-cookie") == (401, "unauthorized")
    assert await status(f"/ws/rooms/{room}?after=x", alice.cookie) == (400, "validation_error")
    # "²" and "١" are digits to str.isdigit; past 4300 digits int() refuses to parse
    for after in ("-1", "", "1e3", "%C2%B2", "%D9%A1", str(2**31), "9" * 5000):
        assert await status(f"/ws/rooms/{room}?after={after}", alice.cookie) == (400, "validation_error"), after
    unknown = 2**31 - 2
    assert await status(f"/ws/rooms/dm-{alice.id}-{unknown}", alice.cookie) == (404, "user_not_found")
    low, high = sorted((alice.id, bob.id))
    for name in (
        f"dm-{high}-{low}",  # not in order
        f"dm-0{low}-{high}",
        f"dm-{low}-{high}-1",
        f"dm-{low}-{high}%0A",  # a final newline: "$" would have let it through
        f"dm-{low}-{2**31}",  # past any id
        f"dm-{low}-{'9' * 40}",
        f"dm-{low}",
        "dm--1-2",
        "room",
        "dm-%D9%A1-%D9%A2",  # Arabic-Indic digits
        "dm-1-2%00",
        "x" * 3000,
    ):
        assert await status(f"/ws/rooms/{name}", alice.cookie) == (404, "room_not_found"), name
    for path in ("/ws/rooms/", f"/ws/rooms/{room}/x", "/ws/rooms/a%2Fb"):
        assert (await status(path, alice.cookie))[0] == 404, path

    # origins: ours (also as https://, behind a TLS proxy), a configured one, or none at all (a native client)
    own = shared_server.base_url.removeprefix("http://")
    for origin in (f"http://{own}", f"https://{own}", ALLOWED_ORIGIN):
        async with alice.connect(room, origin=origin) as ws:
            assert (await recv_frame(ws))["type"] == "presence"
    headers = {"Cookie": f"chat_session={alice.cookie}"}
    async with connect(f"{shared_server.ws_url}/ws/rooms/{room}", additional_headers=headers) as ws:
        assert (await recv_frame(ws))["type"] == "presence"
    for origin in ("null", "http://127.0.0.1:1", f"{ALLOWED_ORIGIN}.evil.example"):
        assert await status(f"/ws/rooms/{room}", alice.cookie, origin=origin) == (403, "forbidden_origin"), origin

    # a revoked session: the signed cookie is still well-formed, the session behind it is gone
    old_cookie = alice.cookie
    assert alice.http.post("/logout").status_code == 204
    assert await status(f"/ws/rooms/{room}", old_cookie) == (401, "unauthorized")


async def test_a_sender_hanging_up_mid_send_leaves_no_gap(pair):
    """A client that sends and at once drops the connection cancels the server's handler mid-send: a
    message stored by then must still be published, or live sockets would miss it for good."""
    alice, bob = pair
    room = alice.room_with(bob)
    async with bob.connect(room) as b_ws:
        await recv_until(b_ws, lambda f: f["type"] == "presence")
        for attempt in range(50):
            raw = await RawWebsocket.open(alice.server, room, alice.cookie)
            await raw.read_frame()  # the presence frame: the server is in the room
            raw.send_text(send_frame(f"bye {attempt}", f"bye-{attempt}"))
            await raw.writer.drain()
            # hang up a little later each time, to land inside the server's store-then-publish
            await asyncio.sleep((attempt % 10) * 0.001)
            raw.abort()
        alice.http.post("/send-message", json={"receiver_id": bob.id, "content": "end"})
        seen: list[dict] = []
        await recv_until(b_ws, message_frame("end"), timeout=10, seen=seen)
        received = [f["message"]["id"] for f in seen if f["type"] == "message"]
        stored = alice.stored_ids(bob)  # a last "bye" may have been stored after "end": read up to it
        while received[-1] < stored[-1]:
            received.append((await recv_until(b_ws, message_frame(), timeout=10))["message"]["id"])
    assert received == stored


# ---------------------------------------------------------------- delivery: resume, burst, slow reader


async def test_resume_with_after_over_repeated_reconnects_while_the_other_keeps_sending(pair):
    """Read a few messages, hang up, reconnect with ?after=<last id read>, again and again, while the other
    participant keeps sending: the ids read across all connections are exactly the stored ids."""
    alice, bob = pair
    room = alice.room_with(bob)
    total, per_connection = 120, 8

    async def keep_sending() -> None:
        async with bob.async_http() as http:
            for n in range(total):
                response = await http.post("/send-message", json={"receiver_id": alice.id, "content": f"m{n}"})
                assert response.status_code == 201

    sender = asyncio.create_task(keep_sending())
    received: list[int] = []
    connections = reconnects_while_sending = 0
    try:
        while len(received) < total:
            async with alice.connect(room, after=received[-1] if received else 0) as ws:
                connections += 1
                reconnects_while_sending += connections > 1 and not sender.done()
                for _ in range(min(per_connection, total - len(received))):
                    frame = await recv_until(ws, message_frame(), timeout=10)
                    received.append(frame["message"]["id"])
            # frames still in flight on the old connection are dropped by the close: the resume must replay them
        await sender
    finally:
        sender.cancel()
    assert received == alice.stored_ids(bob)  # no gap, no duplicate, in order
    assert len(received) == total
    assert reconnects_while_sending >= 3, reconnects_while_sending


async def test_a_burst_of_500_messages_from_both_sides_reaches_every_socket_once_in_order(pair):
    """Both participants send at once, over their sockets and over HTTP; each socket (and a second tab)
    gets every message exactly once, in id order, reconnecting with ?after if the server says 1013. The two
    sending sockets also hang up now and then mid-burst, and resend what was not acknowledged yet."""
    alice, bob = pair
    room = alice.room_with(bob)
    per_stream = 125  # four streams: alice and bob, each over the socket and over HTTP
    total = 4 * per_stream
    a_socket = ResumingClient(alice, room, hang_up_every=200)
    b_socket = ResumingClient(bob, room, hang_up_every=250)
    a_tab = ResumingClient(alice, room)
    for client in (a_socket, b_socket, a_tab):
        await client.open(after=0)

    async def over_socket(client: ResumingClient, tag: str) -> None:
        for n in range(per_stream):
            await client.send(f"{tag} {n}", f"{tag}-{n}")

    async def over_http(person: Person, other: Person, tag: str, workers: int = 3) -> None:
        numbers = iter(range(per_stream))

        async def worker(http) -> None:
            for n in numbers:
                body = {"receiver_id": other.id, "content": f"{tag} {n}", "client_id": f"{tag}-{n}"}
                response = await http.post("/send-message", json=body)
                assert response.status_code == 201, response.text

        async with person.async_http() as http:
            await asyncio.gather(*(worker(http) for _ in range(workers)))

    def everything(client: ResumingClient):
        return lambda: len(client.received) >= total and not client.pending

    await asyncio.gather(
        over_socket(a_socket, "a-ws"),
        over_socket(b_socket, "b-ws"),
        over_http(alice, bob, "a-http"),
        over_http(bob, alice, "b-http"),
        *(client.pump(everything(client), timeout=90) for client in (a_socket, b_socket, a_tab)),
    )
    for client in (a_socket, b_socket, a_tab):
        await client.close()

    stored = alice.stored_ids(bob)
    assert len(stored) == total  # every send stored once, resent ones included
    for client in (a_socket, b_socket, a_tab):
        assert client.ids == stored, client.close_codes  # once each, in id order
        assert set(client.close_codes) <= {1013}
    assert len({m["client_id"] for m in a_socket.received}) == total
    assert a_socket.hang_ups >= 2 and b_socket.hang_ups >= 1


async def test_a_slow_reader_is_closed_and_then_resumes_losing_nothing(pair):
    """A client that stops reading (a raw socket with a tiny receive window) is closed with 1013 once its
    queue is full, instead of growing the server's memory; reconnecting with ?after it loses nothing."""
    alice, bob = pair
    room = alice.room_with(bob)
    big = "\U0001f600" * 4000  # the longest content allowed: 16 KB frames fill the server's buffers quickly
    async with bob.connect(room, max_size=2**20) as b_ws:
        await recv_until(b_ws, presence_frame(alice.id, False))
        slow = await RawWebsocket.open(alice.server, room, alice.cookie, after=0, receive_buffer=4096)
        try:
            await recv_until(b_ws, presence_frame(alice.id, True))
            sent, alice_gone = 0, False
            while not alice_gone:  # bob writes, one message at a time, until the server drops alice's socket
                await b_ws.send(send_frame(big, f"big-{sent}"))
                seen: list[dict] = []
                await recv_until(b_ws, message_frame(client_id=f"big-{sent}"), seen=seen)
                sent += 1
                alice_gone = any(map(presence_frame(alice.id, False), seen))
                assert sent < 3000, "alice was never dropped"
            frames, code = await slow.frames_until_close(timeout=30)  # now she reads what was on the wire
        finally:
            slow.abort()
    assert code == 1013, code
    received = [f["message"]["id"] for f in frames if f["type"] == "message"]
    assert 0 < len(received) < sent
    stored = alice.stored_ids(bob)
    async with alice.connect(room, after=received[-1], max_size=2**20) as ws:
        while received[-1] != stored[-1]:
            received.append((await recv_until(ws, message_frame(), timeout=10))["message"]["id"])
    assert received == stored


# ---------------------------------------------------------------- typing, read, presence


async def test_typing_is_relayed_to_the_other_participant_only_and_throttled(pair):
    alice, bob = pair
    room = alice.room_with(bob)
    async with alice.connect(room) as tab1, alice.connect(room) as tab2, bob.connect(room) as b_ws:
        for ws in (tab1, tab2):
            await recv_until(ws, presence_frame(bob.id, True))
        for _ in range(5):  # a burst of keystrokes ...
            await tab1.send(json.dumps({"type": "typing"}))
        await tab1.send(send_frame("done typing"))
        seen: list[dict] = []
        await recv_until(b_ws, message_frame("done typing"), seen=seen)
        assert [f for f in seen if f["type"] == "typing"] == [{"type": "typing", "user_id": alice.id}]  # ... one
        for ws in (tab1, tab2):  # never back to the typist, whichever tab typed
            seen = []
            await recv_until(ws, message_frame("done typing"), seen=seen)
            assert not [f for f in seen if f["type"] == "typing"]

        # the throttle lets the next one through about a second later
        started = time.monotonic()
        relayed = asyncio.create_task(recv_until(b_ws, lambda f: f["type"] == "typing", timeout=5))
        while not relayed.done():
            await tab1.send(json.dumps({"type": "typing"}))
            await asyncio.wait({relayed}, timeout=0.1)
        assert await relayed == {"type": "typing", "user_id": alice.id}
        assert 0.5 < time.monotonic() - started < 3


async def test_read_frames_persist_like_mark_read_and_are_relayed(pair):
    alice, bob = pair
    room = alice.room_with(bob)
    ids = [
        alice.http.post("/send-message", json={"receiver_id": bob.id, "content": f"m{n}"}).json()["id"]
        for n in range(3)
    ]

    def unread_from_alice() -> int:
        users = bob.http.get("/get-users").json()["users"]
        return next(user["unread"] for user in users if user["id"] == alice.id)

    assert unread_from_alice() == 3
    async with alice.connect(room) as a_ws, bob.connect(room) as b_ws:
        await b_ws.send(json.dumps({"type": "read", "up_to": ids[1]}))
        relayed = {"type": "read", "user_id": bob.id, "up_to": ids[1]}
        assert await recv_until(a_ws, lambda f: f["type"] == "read") == relayed
        assert await recv_until(b_ws, lambda f: f["type"] == "read") == relayed  # bob's other tabs learn it too
        assert unread_from_alice() == 1  # persisted, as POST /mark-read

        # backwards moves nothing and relays nothing; past the newest message is clamped to it
        await b_ws.send(json.dumps({"type": "read", "up_to": ids[0]}))
        await b_ws.send(json.dumps({"type": "read", "up_to": ids[2] + 1000}))
        seen: list[dict] = []
        await recv_until(a_ws, lambda f: f["type"] == "read", seen=seen)
        assert seen == [{"type": "read", "user_id": bob.id, "up_to": ids[2]}]
        assert unread_from_alice() == 0

        # and POST /mark-read relays the same frame to the room
        new = alice.http.post("/send-message", json={"receiver_id": bob.id, "content": "more"}).json()["id"]
        assert bob.http.post("/mark-read", json={"user_id": alice.id, "up_to": new}).status_code == 204
        assert await recv_until(a_ws, lambda f: f["type"] == "read") == {
            "type": "read",
            "user_id": bob.id,
            "up_to": new,
        }


async def test_presence_follows_the_first_and_the_last_socket_anywhere(shared_server, pair, person):
    alice, bob = pair
    carol = person(shared_server, "carol")
    room = alice.room_with(bob)
    async with alice.connect(room) as a_ws:
        assert await recv_frame(a_ws) == {"type": "presence", "user_id": bob.id, "online": False}  # told on connect
        assert not alice.online(bob)
        elsewhere = await bob.connect(bob.room_with(carol))  # bob's first socket is in another room
        await recv_until(a_ws, presence_frame(bob.id, True))
        assert alice.online(bob)
        async with bob.connect(room) as b_ws:  # a second socket: already online, nothing to say
            assert await recv_frame(b_ws) == {"type": "presence", "user_id": alice.id, "online": True}
            await b_ws.send(send_frame("marker 1"))
            seen: list[dict] = []
            await recv_until(a_ws, message_frame("marker 1"), seen=seen)
            assert [f["type"] for f in seen] == ["message"]
        await elsewhere.close()  # the last one: offline
        seen = []
        await recv_until(a_ws, presence_frame(bob.id, False), seen=seen)
        assert [f["type"] for f in seen] == ["presence"]  # closing the second-last socket said nothing
        assert not alice.online(bob)


async def test_get_users_online_follows_open_sockets(pair):
    alice, bob = pair
    ws = await bob.connect(alice.room_with(bob))
    await recv_frame(ws)
    assert alice.online(bob)  # true while connected (the socket is counted before its first frame)
    await ws.close()
    assert await wait_for(lambda: not alice.online(bob), timeout=1) < 1


# ---------------------------------------------------------------- sessions, errors, shutdown


async def test_logout_closes_the_sockets_of_that_session_only(shared_server, pair):
    alice, bob = pair
    room = alice.room_with(bob)
    laptop = Person(shared_server, httpx.Client(base_url=shared_server.base_url), alice.user)  # a second session
    login(laptop.http, alice.user["username"])
    async with alice.connect(room) as tab1, alice.connect(room) as tab2, laptop.connect(room) as on_laptop:
        for ws in (tab1, tab2, on_laptop):
            await recv_frame(ws)
        old_cookie = alice.cookie
        started = time.monotonic()
        assert alice.http.post("/logout").status_code == 204
        for ws in (tab1, tab2):
            with pytest.raises(ConnectionClosed):
                await recv_until(ws, lambda f: False, timeout=1)
            assert ws.close_code == 1008
        assert time.monotonic() - started < 1
        # the session on the laptop is untouched
        await on_laptop.send(send_frame("still here"))
        await recv_until(on_laptop, message_frame("still here"))
    code, _ = await refusal(shared_server, f"/ws/rooms/{room}", old_cookie)
    assert code == 401
    laptop.http.close()


async def test_frames_the_server_cannot_accept_get_an_error_and_the_connection_stays_open(pair):
    alice, bob = pair
    cases = [
        ("not json", "invalid_json"),
        ('{"type": "message"', "invalid_json"),
        ('{"type": "message", "content": "\\ud800"}', "invalid_json"),  # a lone surrogate
        ("[1, 2]", "unknown_type"),
        ("null", "unknown_type"),
        ('{"content": "no type"}', "unknown_type"),
        ('{"type": "shout", "content": "hi"}', "unknown_type"),
        ('{"type": "message", "content": ""}', "validation_error"),
        ('{"type": "message", "content": "  \\n\\t "}', "validation_error"),
        ('{"type": "message"}', "validation_error"),
        ('{"type": "message", "content": 5}', "validation_error"),
        ('{"type": "message", "content": "nul \\u0000 inside"}', "validation_error"),
        (json.dumps({"type": "message", "content": "x" * 4001}), "validation_error"),
        (json.dumps({"type": "message", "content": "hi", "client_id": "c" * 65}), "validation_error"),
        ('{"type": "read", "up_to": -1}', "validation_error"),
        ('{"type": "read", "up_to": "5"}', "validation_error"),
        ('{"type": "read"}', "validation_error"),
        (json.dumps({"type": "typing", "pad": "x" * 16 * 1024}), "frame_too_large"),
        (b'{"type": "typing"}', "invalid_frame"),  # binary
    ]
    async with alice.connect(alice.room_with(bob)) as ws:
        await recv_until(ws, lambda f: f["type"] == "presence")
        for data, code in cases:
            await ws.send(data)
            frame = await recv_until(ws, lambda f: f["type"] in ("error", "message"))
            assert (frame["type"], frame["error"]) == ("error", code), (data[:60], frame)
            assert frame["message"]
            if code == "validation_error":
                assert frame["fields"], frame

        # a frame of exactly 16 KiB is accepted, and the connection served every frame after an error
        padded = {"type": "message", "content": "edge", "client_id": "edge", "pad": ""}
        padded["pad"] = "x" * (16 * 1024 - len(json.dumps(padded)))
        assert len(json.dumps(padded)) == 16 * 1024
        await ws.send(json.dumps(padded))
        await recv_until(ws, message_frame("edge"))
        await ws.send(send_frame("still open", "ok"))
        await recv_until(ws, message_frame("still open"))
    assert len(alice.stored_ids(bob)) == 2  # nothing else was stored


async def test_sigterm_closes_open_sockets_with_going_away(server, person):
    """server.stop() sends SIGTERM to hypercorn's process group, as systemd or a terminal would."""
    alice, bob = person(server, "alice"), person(server, "bob")
    room = alice.room_with(bob)
    async with alice.connect(room) as a_ws, bob.connect(room) as b_ws:
        await recv_until(a_ws, presence_frame(bob.id, True))
        await recv_frame(b_ws)
        started = time.monotonic()
        stopping = asyncio.create_task(asyncio.to_thread(server.stop))
        for ws in (a_ws, b_ws):
            with pytest.raises(ConnectionClosed):
                await recv_until(ws, lambda f: False, timeout=5)
            assert ws.close_code == 1001
        assert time.monotonic() - started < 3  # well within hypercorn's graceful timeout
        assert await stopping == 0


async def test_a_dead_client_is_found_by_ping_within_a_bounded_time(tmp_path, person):
    """A client that completed the handshake and then went silent (never reads, never answers pings) is
    dropped by hypercorn's pings + read timeout, and the other participant hears it go offline."""
    srv = Server(workdir=tmp_path, extra_args=["--websocket-ping-interval", "1", "--read-timeout", "3"]).start()
    try:
        alice, bob = person(srv, "alice"), person(srv, "bob")
        room = alice.room_with(bob)
        async with bob.connect(room) as b_ws:
            await recv_until(b_ws, presence_frame(alice.id, False))
            dead = await RawWebsocket.open(srv, room, alice.cookie)
            try:
                await recv_until(b_ws, presence_frame(alice.id, True))
                started = time.monotonic()
                await recv_until(b_ws, presence_frame(alice.id, False), timeout=10)
                assert time.monotonic() - started < 6
            finally:
                dead.abort()
            # bob answers pings: idle longer than the read timeout, he is still connected
            await b_ws.send(send_frame("still here"))
            await recv_until(b_ws, message_frame("still here"))
        # (a fresh connection: the server's read timeout closes idle keep-alive ones too)
        users = httpx.get(srv.base_url + "/get-users", cookies={"chat_session": bob.cookie}).json()["users"]
        assert [user["online"] for user in users if user["id"] == alice.id] == [False]
    finally:
        srv.stop()
    assert "Traceback" not in srv.log(), srv.log()
