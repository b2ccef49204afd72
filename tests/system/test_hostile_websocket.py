"""Websocket clients that try to hurt the server, against a real hypercorn process (docs/websocket.md, "Limits").

A flood of frames must not grow the server's memory or delay other users; a socket that the server closes while
its client keeps sending (or never reads) must not leave its TCP connection or its task behind; one user may open
only so many sockets. tests/system/test_websocket_fuzz.py sends random frame sequences.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from testkit.probes import rss_kib, tcp_connections
from testkit.servers import Server
from testkit.ws import (
    RawWebsocket,
    message_frame,
    new_person,
    presence_frame,
    recv_until,
    refusal,
    send_frame,
    wait_for,
    ws_connect,
)

FLOOD_FRAMES = 2000
FLOOD_FRAME_CHARS = 16 * 1024 - 64  # just under the frame limit: each frame is read, parsed and validated


def read_frame_of(size: int, up_to: int = 0) -> str:
    frame = json.dumps({"type": "read", "up_to": up_to, "pad": ""})
    return frame[:-2] + "x" * (size - len(frame)) + '"}'


@pytest.fixture
def lone_server(tmp_path):
    """--workers 0: hypercorn serves in the process it starts, so that process's memory is the server's."""
    server = Server(workdir=tmp_path, workers=0).start()
    yield server
    server.stop()
    assert "Traceback" not in server.log(), server.log()


async def test_a_frame_flood_neither_grows_memory_nor_delays_other_users(lone_server):
    """One user sends 2 000 frames of 16 KB (32 MB) on one socket as fast as TCP takes them and reads nothing;
    meanwhile two other users chat. The server reads the flood at its pace, holding at most a few frames."""
    server = lone_server
    mallory, victim = new_person(server, "mallory"), new_person(server, "victim")
    alice, bob = new_person(server, "alice"), new_person(server, "bob")
    rss_before = rss_kib(server.proc.pid)

    flood = await RawWebsocket.open(server, mallory.room_with(victim), mallory.cookie)
    frame = read_frame_of(FLOOD_FRAME_CHARS)
    for _ in range(FLOOD_FRAMES):
        flood.send_text(frame)  # buffered in this process; the server takes what TCP lets through
    latencies = []
    async with bob.connect(alice.room_with(bob)) as b_ws:
        await recv_until(b_ws, presence_frame(alice.id, False))
        for number in range(10):
            started = time.monotonic()
            alice.http.post("/send-message", json={"receiver_id": bob.id, "content": f"still fast {number}"})
            await recv_until(b_ws, message_frame(f"still fast {number}"), timeout=10)
            latencies.append(time.monotonic() - started)
    rss_during = rss_kib(server.proc.pid)
    flood.abort()
    client = (flood.local_port,)
    await wait_for(
        lambda: not tcp_connections(server.port, client_ports=client),
        timeout=15,
        what=lambda: str(tcp_connections(server.port, client_ports=client)),
    )

    growth_mib = (rss_during - rss_before) / 1024
    print(  # noqa: T201 - the figures, for the report (pytest -s)
        f"\nflood of {FLOOD_FRAMES} x 16 KB: RSS {rss_before / 1024:.1f} -> {rss_during / 1024:.1f} MiB; "
        f"other users' messages arrived in {max(latencies) * 1000:.0f} ms at most"
    )
    # before the bound, Quart queued the whole flood: +37 MiB for 2 000 frames (the reproduction)
    assert growth_mib < 12, growth_mib


async def test_a_socket_closed_while_its_client_floods_leaves_no_connection_behind(lone_server):
    """25 rounds: a client floods a socket and reads nothing; the server closes it (its session signed out: 1008);
    the client floods on for a while and then hangs up. Every connection must be gone: none in CLOSE-WAIT (the
    server never closed its side) and none established."""
    server = lone_server
    frame = read_frame_of(4096)
    clients = []
    for round_number in range(25):
        mallory, victim = new_person(server, "flooder"), new_person(server, "victim")
        flood = await RawWebsocket.open(server, mallory.room_with(victim), mallory.cookie, receive_buffer=4096)
        clients.append(flood.local_port)
        for _ in range(200):
            flood.send_text(frame)
        assert mallory.http.post("/logout").status_code == 204  # the server closes this session's sockets
        for _ in range(200):
            flood.send_text(frame)
        await asyncio.sleep(0.05 * (round_number % 5))  # hang up at different moments of the server's close
        flood.abort()
    await wait_for(
        lambda: not tcp_connections(server.port, "close-wait") and not tcp_connections(server.port, "established"),
        timeout=15,
        what=lambda: (
            f"close-wait {tcp_connections(server.port, 'close-wait')}, "
            f"established {tcp_connections(server.port, 'established')}"
        ),
    )


async def test_a_client_that_never_reads_nor_answers_the_close_is_let_go(lone_server):
    """The server closes (logout) a socket whose client floods it, never reads and never closes: hypercorn still
    hands over the disconnect and ends the connection's task, so the server's side is closed."""
    server = lone_server
    mallory, victim = new_person(server, "stubborn"), new_person(server, "victim")
    flood = await RawWebsocket.open(server, mallory.room_with(victim), mallory.cookie, receive_buffer=4096)
    client = (flood.local_port,)
    frame = read_frame_of(4096)
    for _ in range(300):
        flood.send_text(frame)
    assert mallory.http.post("/logout").status_code == 204
    for _ in range(300):
        flood.send_text(frame)
    # the server's socket of this connection leaves ESTABLISHED (it closed its side: FIN-WAIT, or gone)
    await wait_for(
        lambda: not tcp_connections(server.port, "established", client),
        timeout=20,
        what=lambda: str(tcp_connections(server.port, "established", client)),
    )
    flood.abort()


async def test_sockets_per_session_and_per_user_are_limited(tmp_path):
    server = Server(workdir=tmp_path, env={"CHAT_WS_PER_SESSION": "3", "CHAT_WS_PER_USER": "5"}).start()
    try:
        alice, bob = new_person(server, "alice"), new_person(server, "bob")
        room = alice.room_with(bob)
        second = httpx.Client(base_url=server.base_url)  # alice signed in a second time: another session
        assert second.post("/login", json={"username": alice.user["username"], "password": "correct horse battery"})
        second_cookie = second.cookies["chat_session"]

        async def refused(cookie: str) -> tuple[int, dict]:
            code, body = await refusal(server, f"/ws/rooms/{room}", cookie)
            return code, body["error"]

        first_session = [await alice.connect(room) for _ in range(3)]
        assert await refused(alice.cookie) == (429, "too_many_sockets")
        other_session = [await ws_connect(server, second_cookie, room) for _ in range(2)]
        assert await refused(second_cookie) == (429, "too_many_sockets")  # the user's 5 are open
        with pytest.raises(InvalidStatus) as refusal_info:
            async with alice.connect(room):
                pass
        assert refusal_info.value.response.headers["Retry-After"] == "5"

        await first_session.pop().close()  # one closes: one more may open
        reopened = await _connect_when_admitted(alice, room)
        for ws in [*first_session, *other_session, reopened]:
            await ws.close()
        second.close()
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()


async def _connect_when_admitted(person, room: str, timeout: float = 10):
    """The server frees a socket's place when its handler has ended, a moment after the close."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await person.connect(room)
        except InvalidStatus as exc:
            if exc.response.status_code != 429 or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_frames_past_the_budget_are_dropped_with_a_notice_and_a_flood_is_closed(tmp_path):
    server = Server(workdir=tmp_path, env={"CHAT_WS_FRAME_RATE": "5", "CHAT_WS_FRAME_BURST": "10"}).start()
    try:
        alice, bob = new_person(server, "alice"), new_person(server, "bob")
        async with alice.connect(alice.room_with(bob)) as ws:
            for _ in range(15):
                await ws.send(json.dumps({"type": "typing"}))
            notice = await recv_until(ws, lambda frame: frame["type"] == "error")
            assert notice["error"] == "too_many_frames", notice
            with pytest.raises(ConnectionClosed) as closed:
                for _ in range(200):  # far past the budget, on and on: a flood
                    await ws.send(json.dumps({"type": "typing"}))
                await recv_until(ws, lambda frame: False, timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429, closed.value
        # a well-behaved client afterwards is served as before
        async with alice.connect(alice.room_with(bob)) as ws:
            await ws.send(send_frame("calm again", "calm"))
            await recv_until(ws, message_frame("calm again"))
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()
