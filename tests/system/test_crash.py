"""Crashes: kill -9 in the middle of 50 concurrent senders, and SIGTERM during traffic, against a real hypercorn
process. What the server acknowledged (a 2xx, or the websocket echo that carries the client_id) survives, once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import time
from dataclasses import dataclass, field

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from chat.rooms import room_for
from testkit.backends import BACKEND, backend_settings
from testkit.http import signed_in_client
from testkit.servers import Server

SENDERS = 50
HTTP_SENDERS = SENDERS // 2  # the other half send over their websocket and count the echo as the ack


@dataclass
class Sender:
    index: int
    cookie: str
    me: dict
    partner: dict
    acked: dict[str, int] = field(default_factory=dict)  # client_id -> message id the server acknowledged
    attempted: dict[str, str] = field(default_factory=dict)  # client_id -> content, acknowledged or not

    @property
    def room(self) -> str:
        return room_for(self.me["id"], self.partner["id"])

    def next_message(self) -> tuple[str, str]:
        client_id = f"s{self.index}-{len(self.attempted)}"
        self.attempted[client_id] = f"message {len(self.attempted)} from sender {self.index}"
        return client_id, self.attempted[client_id]


def sign_up_senders(server: Server, prefix: str) -> list[Sender]:
    """SENDERS people in pairs (0 and 1, 2 and 3, ...): each writes to the other."""
    people = [signed_in_client(server.base_url, f"{prefix}{i}") for i in range(SENDERS)]
    senders = []
    for index, (client, me) in enumerate(people):
        partner = people[index ^ 1][1]
        senders.append(Sender(index, client.cookies["chat_session"], me, partner))
        client.close()
    return senders


async def send_over_http(server: Server, sender: Sender, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(
        base_url=server.base_url, cookies={"chat_session": sender.cookie}, timeout=30
    ) as client:
        while not stop.is_set():
            client_id, content = sender.next_message()
            data = {"receiver_id": sender.partner["id"], "content": content, "client_id": client_id}
            try:
                response = await client.post("/send-message", json=data)
            except httpx.HTTPError:
                return  # the server is gone: what it did not answer is not acknowledged
            assert response.status_code == 201, response.text
            sender.acked[client_id] = response.json()["id"]


async def send_over_websocket(server: Server, sender: Sender, stop: asyncio.Event, closes: list[int | None]) -> None:
    """Send a frame, wait for its echo (the acknowledgement), send the next; remember the close code."""
    try:
        async with ws_connect(server, sender) as ws:
            while not stop.is_set():
                client_id, content = sender.next_message()
                await ws.send(json.dumps({"type": "message", "content": content, "client_id": client_id}))
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    message = frame.get("message") or {}
                    if frame["type"] == "message" and message.get("client_id") == client_id:
                        sender.acked[client_id] = message["id"]
                        break
    except ConnectionClosed as exc:
        closes.append(exc.rcvd.code if exc.rcvd else None)
    except OSError:
        closes.append(None)


def ws_connect(server: Server, sender: Sender, after: int | None = None):
    query = "" if after is None else f"?after={after}"
    return connect(
        f"{server.ws_url}/ws/rooms/{sender.room}{query}",
        additional_headers={"Cookie": f"chat_session={sender.cookie}"},
        origin=server.base_url,
        open_timeout=10,
    )


def run_senders(server: Server, senders: list[Sender], stop: asyncio.Event, closes: list) -> list[asyncio.Task]:
    return [
        asyncio.create_task(
            send_over_http(server, sender, stop)
            if sender.index < HTTP_SENDERS
            else send_over_websocket(server, sender, stop, closes)
        )
        for sender in senders
    ]


async def wait_for_acks(senders: list[Sender], count: int, timeout: float = 60) -> None:
    """Until `count` messages are acknowledged, and at least one of every sender: then every websocket sender is
    past its handshake (one that a crash cuts short would fail with a handshake error, not a closed connection)."""
    deadline = time.monotonic() + timeout
    while sum(len(s.acked) for s in senders) < count or not all(s.acked for s in senders):
        assert time.monotonic() < deadline, f"only {sum(len(s.acked) for s in senders)} acknowledged"
        await asyncio.sleep(0.01)


def stored_by_client_id(server: Server, sender: Sender) -> dict[str, list[int]]:
    """Every stored message of the sender's conversation, by client_id, paged through GET /get-messages."""
    found: dict[str, list[int]] = {}
    with httpx.Client(base_url=server.base_url, cookies={"chat_session": sender.cookie}, timeout=30) as client:
        after = 0
        while True:
            page = client.get("/get-messages", params={"user_id": sender.partner["id"], "after": after, "limit": 200})
            assert page.status_code == 200, page.text
            body = page.json()
            for message in body["messages"]:
                if message["sender_id"] == sender.me["id"]:
                    found.setdefault(message["client_id"], []).append(message["id"])
                after = message["id"]
            if not body["has_more"]:
                return found


def assert_acknowledged_exactly_once(server: Server, senders: list[Sender]) -> None:
    for sender in senders:
        stored = stored_by_client_id(server, sender)
        assert all(len(ids) == 1 for ids in stored.values()), stored  # nothing twice
        for client_id, message_id in sender.acked.items():
            assert stored.get(client_id) == [message_id], (sender.index, client_id)  # and every ack there


def retry_everything(server: Server, senders: list[Sender]) -> tuple[int, int]:
    """Send every attempted message again with its client_id: an acknowledged one comes back as it was (200);
    one that never got an answer is stored now (201), or was stored before the crash (200, the original).
    Returns (originals returned, newly stored)."""
    originals = new = 0
    for sender in senders:
        with httpx.Client(base_url=server.base_url, cookies={"chat_session": sender.cookie}, timeout=30) as client:
            for client_id, content in sender.attempted.items():
                data = {"receiver_id": sender.partner["id"], "content": content, "client_id": client_id}
                response = client.post("/send-message", json=data)
                assert response.status_code in (200, 201), response.text
                if client_id in sender.acked:
                    assert response.status_code == 200 and response.json()["id"] == sender.acked[client_id]
                originals += response.status_code == 200
                new += response.status_code == 201
                sender.acked[client_id] = response.json()["id"]
    return originals, new


async def test_kill_9_in_the_middle_of_50_senders_loses_and_doubles_nothing(tmp_path):
    # the per-user limit is generous for people; these senders write as fast as the server answers
    server = Server(workdir=tmp_path, env={"CHAT_SEND_LIMIT": "100000", "CHAT_WS_FRAME_RATE": "100000"}).start()
    try:
        senders = sign_up_senders(server, "crash")
        stop, closes = asyncio.Event(), []
        tasks = run_senders(server, senders, stop, closes)
        await wait_for_acks(senders, 400)  # well into the traffic
        server.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)  # every sender noticed
        acked_before = sum(len(s.acked) for s in senders)
        attempted = sum(len(s.attempted) for s in senders)

        server.start()  # the same database
        restart_seconds = time.monotonic() - killed_at
        assert_acknowledged_exactly_once(server, senders)
        originals, new = retry_everything(server, senders)
        assert originals >= acked_before
        assert_acknowledged_exactly_once(server, senders)  # now every attempted message, still each once
        assert sum(len(s.acked) for s in senders) == attempted

        print(  # noqa: T201 - the figures of the run, for the report (pytest -s)
            f"\nkill -9: {acked_before} acknowledged of {attempted} attempted; after restart "
            f"({restart_seconds:.2f}s) {originals} retries returned the original, {new} were stored anew"
        )
        assert integrity_ok(server)
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()


def integrity_ok(server: Server) -> bool:
    if BACKEND == "postgres":
        return True  # PostgreSQL's own crash recovery; there is no file to check
    with contextlib.closing(sqlite3.connect(server.workdir / "instance" / "chat.sqlite3")) as db:
        return db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


@contextlib.asynccontextmanager
async def writes_held(server: Server):
    """Another client holds the messages table for writing: the server's inserts wait (in flight) until it lets go."""
    if BACKEND == "postgres":
        import asyncpg

        dsn = backend_settings(server.workdir)["CHAT_DATABASE_URL"].replace("postgres://", "postgresql://")
        connection = await asyncpg.connect(dsn)
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute("LOCK TABLE messages IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            await transaction.rollback()
            await connection.close()
    else:
        holder = sqlite3.connect(server.workdir / "instance" / "chat.sqlite3", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.rollback()
            holder.close()


@pytest.mark.parametrize("worker_class", ["asyncio", "uvloop"])  # uvloop: make run's, hypercorn.toml's
async def test_sigterm_during_traffic_finishes_in_flight_requests_and_closes_sockets_with_1001(tmp_path, worker_class):
    server = Server(
        workdir=tmp_path,
        env={"CHAT_SEND_LIMIT": "100000", "CHAT_WS_FRAME_RATE": "100000"},
        extra_args=["--graceful-timeout", "15", "--worker-class", worker_class],
    ).start()
    try:
        senders = sign_up_senders(server, "term")
        stop, closes = asyncio.Event(), []
        tasks = run_senders(server, senders, stop, closes)
        await wait_for_acks(senders, 300)

        # make requests that are certainly in flight when the signal arrives: they wait for the database
        sender = senders[0]
        client = httpx.AsyncClient(base_url=server.base_url, cookies={"chat_session": sender.cookie}, timeout=30)
        async with writes_held(server):
            in_flight = [
                asyncio.create_task(
                    client.post(
                        "/send-message",
                        json={"receiver_id": sender.partner["id"], "content": f"in flight {i}", "client_id": f"f{i}"},
                    )
                )
                for i in range(5)
            ]
            await asyncio.sleep(0.5)  # they reached the server and wait on the lock (nothing to poll for here)
            assert not any(task.done() for task in in_flight)
            os.killpg(server.proc.pid, signal.SIGTERM)  # as systemd or a terminal does: master and worker
            await asyncio.sleep(0.5)  # the lock stays held a while into the shutdown
        responses = await asyncio.wait_for(asyncio.gather(*in_flight), 20)
        await client.aclose()
        assert [r.status_code for r in responses] == [201] * 5, [r.text for r in responses]
        for i, response in enumerate(responses):
            sender.acked[f"f{i}"] = response.json()["id"]

        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        assert server.proc.wait(20) == 0
        # every websocket sender was told "going away" (1001), which tells a client to reconnect and resume
        assert closes and set(closes) == {1001}, closes

        server.start()
        assert_acknowledged_exactly_once(server, senders)
        assert integrity_ok(server)
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()
