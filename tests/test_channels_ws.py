"""Channels over real websockets against real hypercorn (two workers on PostgreSQL + Redis in that configuration):
admission, a burst from every member over HTTP and websockets reaching every socket once in id order, ?after
resume, and removal closing the removed member's sockets with 4403 within a second."""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.exceptions import ConnectionClosed

from .support import BACKEND, Server
from .ws_support import new_person, recv_until, refusal, send_frame

WORKERS = 2 if BACKEND == "postgres" else 1


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


async def test_a_burst_reaches_every_socket_once_in_order_and_after_resumes(channel_server):
    people = [new_person(channel_server) for _ in range(3)]
    room = make_channel(people[0], people[1:])
    per_sender, total = 40, 40 * 3 * 2
    sockets = [await person.connect(room, max_size=2**20).__aenter__() for person in people for _ in range(2)]
    try:

        async def over_http(person, tag):
            async with person.async_http() as http:
                for n in range(per_sender):
                    response = await http.post(
                        "/send-message", json={"room": room, "content": f"{tag}{n}", "client_id": f"{tag}{n}"}
                    )
                    assert response.status_code in (200, 201), response.text

        async def over_ws(ws, tag):
            for n in range(per_sender):
                await ws.send(send_frame(f"{tag}{n}", f"{tag}{n}"))

        readers = [asyncio.create_task(collect(ws, total)) for ws in sockets]
        await asyncio.gather(
            *(over_http(person, f"h{i}-") for i, person in enumerate(people)),
            *(over_ws(sockets[2 * i], f"w{i}-") for i in range(3)),
        )
        results = await asyncio.gather(*readers)
    finally:
        for ws in sockets:
            await ws.close()
    stored = [
        m["id"] for m in people[0].http.get("/get-messages", params={"room": room, "limit": 200}).json()["messages"]
    ]
    assert len(stored) == min(total, 200)
    for ids in results:
        assert ids == sorted(ids) and len(set(ids)) == total  # once each, in id order
    # a reconnect with ?after fills the gap
    async with people[1].connect(room, after=results[0][total // 2]) as ws:
        assert await collect(ws, total - total // 2 - 1) == results[0][total // 2 + 1 :]


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
