"""Channels over real websockets against real hypercorn (two workers on PostgreSQL + Redis in that configuration):
admission, a burst from every member over HTTP and websockets reaching every socket once in id order, ?after
resume, and removal closing the removed member's sockets with 4403 within a second."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.exceptions import ConnectionClosed

from .support import BACKEND, Server
from .ws_support import new_person, recv_until, refusal, send_frame

WORKERS = 2 if BACKEND == "postgres" else 1


@pytest.fixture
def burst_server(tmp_path):
    """Past the default send limit (100 in 10 s per user) and frame burst (60): the burst is the point."""
    env = {"CHAT_SEND_LIMIT": "10000", "CHAT_WS_FRAME_BURST": "1000"}
    srv = Server(workdir=tmp_path, workers=WORKERS, env=env).start()
    yield srv
    srv.stop()
    assert "Traceback" not in srv.log(), srv.log()


@pytest.fixture
def channel_server(tmp_path):
    srv = Server(workdir=tmp_path, workers=WORKERS).start()
    yield srv
    srv.stop()
    assert "Traceback" not in srv.log(), srv.log()


def make_channel(owner, members, **extra) -> str:
    body = {"name": f"c{time.monotonic_ns()}", "member_ids": [m.id for m in members], **extra}
    response = owner.http.post("/rooms", json=body)
    assert response.status_code == 201, response.text
    return response.json()["room"]


async def collect(ws, count: int, timeout: float = 60) -> list[int]:
    ids: list[int] = []
    async with asyncio.timeout(timeout):
        while len(ids) < count:
            frame = await recv_until(ws, lambda f: f["type"] == "message", timeout)
            ids.append(frame["message"]["id"])
    return ids


async def test_non_members_are_refused_before_the_upgrade(channel_server):
    alice, bob, carol = (new_person(channel_server) for _ in range(3))
    private = make_channel(alice, [bob], private=True)
    assert (await refusal(channel_server, f"/ws/rooms/{private}", carol.cookie))[0] == 403
    assert (await refusal(channel_server, "/ws/rooms/ch-987654", carol.cookie))[0] == 404
    async with bob.connect(private) as ws:
        bob.http.post("/send-message", json={"room": private, "content": "in"})
        await recv_until(ws, lambda f: f["type"] == "message" and f["message"]["content"] == "in")


def stored_ids(person, room: str) -> list[int]:
    ids: list[int] = []
    while True:
        params = {"room": room, "after": ids[-1] if ids else 0, "limit": 200}
        page = person.http.get("/get-messages", params=params).json()
        ids += [message["id"] for message in page["messages"]]
        if not page["has_more"]:
            return ids


async def until_closed(ws, timeout: float) -> tuple[list[int], int, float]:
    """The message ids a socket receives until it is closed, its close code, and when it closed."""
    ids: list[int] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "message":
                    ids.append(frame["message"]["id"])
    except ConnectionClosed as closed:
        return ids, closed.rcvd.code if closed.rcvd else None, time.monotonic()
    raise AssertionError("the socket was not closed")


async def test_a_burst_reaches_every_socket_once_in_order_and_a_removed_member_stops(burst_server):
    """Three members, two sockets each, send 500 messages at once over HTTP and websockets; a fourth member is
    removed mid-burst. Every member's socket gets every message once, in id order, equal to the stored history;
    the removed one's sockets close with 4403 within a second and get nothing after; ?after fills a gap."""
    people = [new_person(burst_server) for _ in range(3)]
    leaver = new_person(burst_server)
    room = make_channel(people[0], [*people[1:], leaver])
    per_way = 84  # 3 people x (HTTP + websocket) x 84 = 504
    total = per_way * 3 * 2
    sockets = [await person.connect(room, max_size=2**20).__aenter__() for person in people for _ in range(2)]
    leaving = [await leaver.connect(room, max_size=2**20).__aenter__() for _ in range(2)]
    removed_at: list[float] = []
    try:

        async def over_http(person, tag):
            async with person.async_http() as http:
                for n in range(per_way):
                    body = {"room": room, "content": f"{tag}{n}", "client_id": f"{tag}{n}"}
                    response = await http.post("/send-message", json=body)
                    assert response.status_code in (200, 201), response.text

        async def over_ws(ws, tag):
            for n in range(per_way):
                await ws.send(send_frame(f"{tag}{n}", f"{tag}{n}"))

        async def remove_mid_burst():
            await asyncio.sleep(0.5)
            async with people[0].async_http() as http:
                response = await http.delete(f"/rooms/{room}/members/{leaver.id}")
            assert response.status_code == 204
            removed_at.append(time.monotonic())

        readers = [asyncio.create_task(collect(ws, total, timeout=120)) for ws in sockets]
        leavers = [asyncio.create_task(until_closed(ws, 60)) for ws in leaving]
        await asyncio.gather(
            *(over_http(person, f"h{i}-") for i, person in enumerate(people)),
            *(over_ws(sockets[2 * i], f"w{i}-") for i in range(3)),
            remove_mid_burst(),
        )
        results = await asyncio.gather(*readers)
        left = await asyncio.gather(*leavers)
    finally:
        for ws in sockets:
            await ws.close()
    stored = stored_ids(people[0], room)
    assert len(stored) == total
    for ids in results:
        assert ids == stored  # once each, in id order, no gap
    for ids, code, closed_at in left:
        assert code == 4403
        assert closed_at - removed_at[0] < 1.0
        assert ids == stored[: len(ids)]  # what it got before, in order and without a gap
    # a reconnect with ?after fills the gap
    async with people[1].connect(room, after=stored[total // 2]) as ws:
        assert await collect(ws, total - total // 2 - 1) == stored[total // 2 + 1 :]


async def test_removal_closes_the_members_sockets_with_4403_within_a_second(channel_server):
    alice, bob = new_person(channel_server), new_person(channel_server)
    room = make_channel(alice, [bob])
    sockets = [await bob.connect(room).__aenter__() for _ in range(3)]  # spread over the workers
    await asyncio.sleep(0.3)
    started = time.monotonic()
    assert alice.http.delete(f"/rooms/{room}/members/{bob.id}").status_code == 204
    for ws in sockets:
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(3):
                while True:
                    await ws.recv()
        assert closed.value.rcvd.code == 4403
    assert time.monotonic() - started < 1.5
    assert (await refusal(channel_server, f"/ws/rooms/{room}", bob.cookie))[0] == 403
    assert bob.http.post("/send-message", json={"room": room, "content": "x"}).status_code == 403


async def test_typing_read_presence_member_and_room_frames_in_a_channel(channel_server):
    alice, bob, carol = (new_person(channel_server) for _ in range(3))
    room = make_channel(alice, [bob])
    async with alice.connect(room) as on_alice, bob.connect(room) as on_bob:
        await recv_until(on_alice, lambda f: f == {"type": "presence", "user_id": bob.id, "online": True})
        await on_bob.send('{"type": "typing"}')
        assert await recv_until(on_alice, lambda f: f["type"] == "typing") == {"type": "typing", "user_id": bob.id}
        sent = alice.http.post("/send-message", json={"room": room, "content": "hi"}).json()
        await on_bob.send(json.dumps({"type": "read", "up_to": sent["id"]}))
        read = await recv_until(on_alice, lambda f: f["type"] == "read")
        assert read == {"type": "read", "user_id": bob.id, "up_to": sent["id"]}
        assert carol.http.post(f"/rooms/{room}/join").status_code == 200
        member = await recv_until(on_bob, lambda f: f["type"] == "member")
        assert member == {"type": "member", "user_id": carol.id, "joined": True, "role": "member"}
        async with carol.connect(room):  # a new member's presence reaches the others
            await recv_until(on_bob, lambda f: f == {"type": "presence", "user_id": carol.id, "online": True})
        await recv_until(on_bob, lambda f: f == {"type": "presence", "user_id": carol.id, "online": False})
        assert alice.http.patch(f"/rooms/{room}", json={"topic": "new topic"}).status_code == 200
        frame = await recv_until(on_bob, lambda f: f["type"] == "room")
        assert frame["room"]["topic"] == "new topic" and "role" not in frame["room"]
        assert alice.http.post(f"/rooms/{room}/archive").status_code == 204
        assert (await recv_until(on_bob, lambda f: f["type"] == "room"))["room"]["archived"] is True
        await on_bob.send(send_frame("still there?"))
        error = await recv_until(on_bob, lambda f: f["type"] == "error")
        assert error["error"] == "room_archived"
        assert bob.http.post(f"/rooms/{room}/leave").status_code == 204
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(3):
                while True:
                    await on_bob.recv()
        assert closed.value.rcvd.code == 4403
