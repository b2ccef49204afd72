"""Overload, bounded and on loopback only: 500 websocket clients reconnecting at the same moment, then 1 000
connected clients chatting for a fixed time. Nothing is lost or duplicated, the server's memory levels off
and it leaks no file descriptors. Marked `overload`: the PostgreSQL pass leaves them out (they measure the
server process, not the database)."""

from __future__ import annotations

import asyncio
import random
import resource
import time

import pytest

from testkit.probes import open_fds, rss_kib, wait_until
from testkit.servers import Server
from testkit.ws import Person, ResumingClient, new_person, recv_until

pytestmark = pytest.mark.overload

PEOPLE = 200  # 100 pairs
SOCKETS_EACH = 5  # 1 000 sockets in all
STORM = 500
CHAT_SECONDS = 20
SEND_EVERY = 6.0  # seconds between one person's messages: ~33 messages a second in all, each to 10 sockets


@pytest.fixture
def many_files():
    """Room for 1 000 sockets here and in the server (which inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 8192), hard), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def busy_server(tmp_path, many_files):
    # --workers 0: hypercorn serves in the process it starts, so its pid is the one to measure
    server = Server(workdir=tmp_path, workers=0).start()
    yield server
    server.stop()
    assert "Traceback" not in server.log(), server.log()


def pairs_of(server: Server) -> list[tuple[Person, Person]]:
    people = [new_person(server, "load") for _ in range(PEOPLE)]
    return [(people[i], people[i + 1]) for i in range(0, PEOPLE, 2)]


async def open_all(clients: list[ResumingClient], after: int = 0, batch: int = STORM) -> float:
    """Open every socket, `batch` at the same moment; returns the seconds it took."""
    started = time.monotonic()
    for first in range(0, len(clients), batch):
        await asyncio.gather(*(client.open(after=after) for client in clients[first : first + batch]))
    return time.monotonic() - started


async def test_500_clients_reconnect_at_once_and_miss_nothing(busy_server):
    pairs = pairs_of(busy_server)
    clients = []
    for index in range(STORM):  # 5 sockets in each of the 100 rooms
        a, b = pairs[index % len(pairs)]
        person, other = (a, b) if index // len(pairs) % 2 == 0 else (b, a)
        clients.append(ResumingClient(person, person.room_with(other)))
    fds_before = open_fds(busy_server.proc.pid)
    first = await open_all(clients)
    # everyone drops at the same moment (a network blip, a proxy restart) ...
    await asyncio.gather(*(client.close() for client in clients))
    # ... the conversations go on meanwhile ...
    written = {}
    for a, b in pairs:
        message = a.http.post("/send-message", json={"receiver_id": b.id, "content": "while you were away"}).json()
        written[a.room_with(b)] = message["id"]
    # ... and everyone comes back at once, resuming from the last message it had (none: after=0)
    again = await open_all(clients)
    await asyncio.gather(
        *(
            recv_until(c.ws, lambda f, c=c: f["type"] == "message" and f["message"]["id"] == written[c.room], 60)
            for c in clients
        )
    )
    await asyncio.gather(*(client.close() for client in clients))
    wait_until(
        lambda: open_fds(busy_server.proc.pid) <= fds_before + 2,
        timeout=30,
        what=lambda: f"{open_fds(busy_server.proc.pid)} fds, {fds_before} before",
    )
    print(
        f"\nreconnect storm: {STORM} sockets opened in {first:.1f}s, reopened at once in {again:.1f}s; "  # noqa: T201
        f"fds {fds_before} before, {open_fds(busy_server.proc.pid)} after"
    )


async def test_1000_clients_chat_without_loss_duplicates_growth_or_leaks(busy_server):
    server = busy_server
    pairs = pairs_of(server)
    clients: dict[str, list[ResumingClient]] = {}
    for a, b in pairs:
        room = a.room_with(b)
        clients[room] = [ResumingClient(p, room) for p in (a, b) for _ in range(SOCKETS_EACH)]
    everyone = [c for room in clients.values() for c in room]
    pid = server.proc.pid
    fds_before, rss_before = open_fds(pid), rss_kib(pid)
    opened = await open_all(everyone, batch=100)
    fds_connected = open_fds(pid)

    samples: list[tuple[float, int]] = []
    sent: dict[str, int] = {room: 0 for room in clients}
    deadline = time.monotonic() + CHAT_SECONDS

    async def sample() -> None:
        start = time.monotonic()
        while time.monotonic() < deadline:
            samples.append((time.monotonic() - start, rss_kib(pid)))
            await asyncio.sleep(1)

    async def talk(room: str, person_sockets: list[ResumingClient], index: int) -> None:
        rng = random.Random(index)
        await asyncio.sleep(rng.uniform(0, SEND_EVERY))  # spread the senders out
        while time.monotonic() < deadline:
            client = rng.choice(person_sockets)
            await client.send(f"message {index}-{sent[room]}", f"{index}-{sent[room]}")
            sent[room] += 1
            await asyncio.sleep(SEND_EVERY)

    async def listen(client: ResumingClient) -> None:
        await client.pump(lambda: bool(client.received) and client.received[-1]["content"] == "end", 90)

    async def talk_then_end() -> None:
        await asyncio.gather(*talkers)
        for room, sockets in clients.items():  # the last word of each room, so that its listeners know
            a, b = sockets[0].person, sockets[-1].person
            assert a.http.post("/send-message", json={"receiver_id": b.id, "content": "end"}).status_code == 201
            sent[room] += 1

    talkers = [
        talk(room, [c for c in sockets if c.person is person], index)
        for index, (room, sockets) in enumerate(clients.items())
        for person in {c.person.id: c.person for c in sockets}.values()
    ]
    await asyncio.gather(sample(), talk_then_end(), *(listen(c) for c in everyone))

    # every socket of a room saw every message of the room once, in id order, and nothing else
    for room, sockets in clients.items():
        stored = sockets[0].person.stored_ids(next(c.person for c in sockets if c.person is not sockets[0].person))
        assert len(stored) == sent[room]
        for client in sockets:
            assert client.ids == stored, (room, client.ids[:5], stored[:5])
            assert not client.pending, client.pending  # every message acknowledged (echoed)
    await asyncio.gather(*(client.close() for client in everyone))
    wait_until(
        lambda: open_fds(pid) <= fds_before + 2, timeout=30, what=lambda: f"{open_fds(pid)} fds, {fds_before} before"
    )

    # memory levels off: the last third of the run grows at most a little over the middle third
    third = len(samples) // 3
    middle, last = max(r for _, r in samples[third : 2 * third]), max(r for _, r in samples[2 * third :])
    messages = sum(sent.values())
    print(  # noqa: T201 - the figures for the report (pytest -s)
        f"\n1 000 sockets: opened in {opened:.1f}s; {messages} messages in {CHAT_SECONDS}s, "
        f"{messages * 2 * SOCKETS_EACH} deliveries; RSS MiB before {rss_before / 1024:.0f}, "
        f"over time {[round(r / 1024) for _, r in samples]}; fds {fds_before} before, {fds_connected} connected, "
        f"{open_fds(pid)} after"
    )
    assert last <= middle * 1.10 + 4096, samples
