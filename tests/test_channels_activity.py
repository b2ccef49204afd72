"""GET /ws/me, the caller's activity stream, against real hypercorn (two workers on PostgreSQL + Redis in that
configuration): the snapshot equals GET /rooms + GET /get-users, activity moves unread counts within 100 ms, a
read on one device clears the badge on another, rooms added and removed arrive, and the same refusals as
/ws/rooms/…"""

from __future__ import annotations

import time

import pytest
from websockets.asyncio.client import connect

from .support import BACKEND, Server
from .ws_support import COOKIE, new_person, recv_frame, recv_until, refusal

WORKERS = 2 if BACKEND == "postgres" else 1


@pytest.fixture
def activity_server(tmp_path):
    srv = Server(workdir=tmp_path, workers=WORKERS).start()
    yield srv
    srv.stop()
    assert "Traceback" not in srv.log(), srv.log()


def open_me(person):
    return connect(
        f"{person.server.ws_url}/ws/me",
        additional_headers={"Cookie": f"{COOKIE}={person.cookie}"},
        origin=person.server.base_url,
        open_timeout=10,
    )


def make_channel(owner, members, **extra) -> str:
    body = {"name": f"c{time.monotonic_ns()}", "member_ids": [m.id for m in members], **extra}
    response = owner.http.post("/rooms", json=body)
    assert response.status_code == 201, response.text
    return response.json()["room"]


def activity_of(room: str):
    return lambda frame: frame["type"] == "activity" and frame["room"] == room


async def test_the_snapshot_is_what_the_http_api_says(activity_server):
    alice, bob, carol = (new_person(activity_server) for _ in range(3))
    room = make_channel(alice, [bob])
    alice.http.post("/send-message", json={"room": room, "content": "hi @" + bob.user["username"]})
    carol.http.post("/send-message", json={"receiver_id": bob.id, "content": "psst"})
    async with open_me(bob) as ws:
        snapshot = await recv_frame(ws)
    assert snapshot["type"] == "snapshot"
    rooms = {entry["room"]: entry for entry in snapshot["rooms"]}
    [channel] = bob.http.get("/rooms").json()["rooms"]
    assert rooms[room] == {key: channel[key] for key in ("room", "unread", "mentions", "last_message_id")}
    users = {user["id"]: user for user in bob.http.get("/get-users").json()["users"]}
    direct = f"dm-{min(bob.id, carol.id)}-{max(bob.id, carol.id)}"
    assert rooms[direct]["unread"] == users[carol.id]["unread"] == 1
    assert set(rooms) == {room, direct}
    assert bob.id in snapshot["online"] or snapshot["online"] == []  # bob's own socket may be counted


async def test_activity_moves_within_100_ms_and_a_read_elsewhere_clears_it(activity_server):
    alice, bob = new_person(activity_server), new_person(activity_server)
    room = make_channel(alice, [bob])
    async with open_me(bob) as phone, open_me(bob) as laptop:
        await recv_until(phone, lambda f: f["type"] == "snapshot")
        await recv_until(laptop, lambda f: f["type"] == "snapshot")
        latencies = []
        for n in range(5):
            started = time.monotonic()
            sent = alice.http.post("/send-message", json={"room": room, "content": f"m{n}"}).json()
            frame = await recv_until(phone, activity_of(room))
            latencies.append(time.monotonic() - started)
            assert (frame["unread"], frame["last_message_id"], frame["mention"]) == (n + 1, sent["id"], False)
        # the HTTP round trip included: the activity frame follows the send's answer at once
        assert sorted(latencies)[len(latencies) // 2] < 0.1, latencies
        mention = alice.http.post("/send-message", json={"room": room, "content": f"@{bob.user['username']}!"}).json()
        frame = await recv_until(laptop, lambda f: activity_of(room)(f) and f["last_message_id"] == mention["id"])
        assert (frame["unread"], frame["mentions"], frame["mention"]) == (6, 1, True)
        assert bob.http.post("/mark-read", json={"room": room, "up_to": mention["id"]}).status_code == 204
        cleared = await recv_until(phone, lambda f: activity_of(room)(f) and f["unread"] == 0)
        assert cleared["mentions"] == 0
        # a direct message from someone new starts a room
        dm = bob.http.post("/send-message", json={"receiver_id": alice.id, "content": "thanks"}).json()
        mine = await recv_until(laptop, activity_of(dm["room"]))
        assert (mine["unread"], mine["last_message_id"]) == (0, dm["id"])


async def test_rooms_added_and_removed_arrive_and_their_messages_count(activity_server):
    alice, bob = new_person(activity_server), new_person(activity_server)
    room = make_channel(alice, [])
    async with open_me(bob) as ws:
        await recv_until(ws, lambda f: f["type"] == "snapshot")
        assert alice.http.post(f"/rooms/{room}/members", json={"user_ids": [bob.id]}).status_code == 204
        added = await recv_until(ws, lambda f: f["type"] == "room_added")
        assert added["room"]["room"] == room and added["room"]["role"] == "member"
        alice.http.post("/send-message", json={"room": room, "content": "welcome"})
        assert (await recv_until(ws, activity_of(room)))["unread"] == 1
        assert alice.http.delete(f"/rooms/{room}/members/{bob.id}").status_code == 204
        assert await recv_until(ws, lambda f: f["type"] == "room_removed") == {"type": "room_removed", "room": room}
        alice.http.post("/send-message", json={"room": room, "content": "gone"})
        joined = make_channel(alice, [])
        bob.http.post(f"/rooms/{joined}/join")
        seen: list[dict] = []
        await recv_until(ws, lambda f: f["type"] == "room_added", seen=seen)
        assert not [f for f in seen if f.get("room") == room]  # nothing more from the room bob left
        mine = make_channel(bob, [])  # a channel bob creates reaches his other devices' sidebars too
        created = await recv_until(ws, lambda f: f["type"] == "room_added")
        assert created["room"]["room"] == mine and created["room"]["role"] == "owner"


async def test_the_same_refusals_as_the_room_sockets(activity_server):
    alice = new_person(activity_server)
    assert (await refusal(activity_server, "/ws/me", None))[0] == 401
    assert (await refusal(activity_server, "/ws/me", alice.cookie, origin="https://evil.example"))[0] == 403
    async with open_me(alice) as ws:
        await recv_until(ws, lambda f: f["type"] == "snapshot")
        await ws.send("{}")
        assert (await recv_until(ws, lambda f: f["type"] == "error"))["error"] == "unknown_type"
