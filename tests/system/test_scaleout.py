"""Several hypercorn processes ("machines") and workers sharing PostgreSQL and Redis behave as one server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import websockets

from testkit.backends import BACKEND, MIGRATIONS, backend_settings, psql
from testkit.files import multipart, png, store_settings
from testkit.http import PASSWORD, signed_in_client
from testkit.probes import app_tracebacks, connection_holders, descendants, wait_until
from testkit.servers import ROOT, Server, free_port, suite_settings
from testkit.ws import Person, ResumingClient, message_frame, new_person, presence_frame, recv_until

pytestmark = pytest.mark.skipif(BACKEND != "postgres", reason="scale-out runs with CHAT_TEST_BACKEND=postgres")

SECRET = {"CHAT_SECRET_KEY": "shared-by-every-machine-of-this-test"}


def machines(tmp_path: Path, count: int, **env: str) -> list[Server]:
    """`count` servers on one database and one Redis, each in its own folder (its own instance path)."""
    shared = backend_settings(tmp_path) | SECRET | env
    return [Server(workdir=_folder(tmp_path / f"machine-{i}"), env=shared).start() for i in range(count)]


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.asynccontextmanager
async def open_socket(server: Server, client: httpx.Client, room: str, after: int | None = None):
    url = f"{server.ws_url}/ws/rooms/{room}" + (f"?after={after}" if after is not None else "")
    headers = {"Cookie": f"chat_session={client.cookies['chat_session']}"}
    async with websockets.connect(url, additional_headers=headers, origin=server.base_url) as ws:
        yield ws


def stop_all(*servers: Server) -> None:
    for server in servers:
        server.stop()
        assert "Traceback" not in server.log(), server.log()


def room_of(a: dict, b: dict) -> str:
    return f"dm-{min(a['id'], b['id'])}-{max(a['id'], b['id'])}"


async def test_two_machines_chat_live_with_presence_typing_and_resume(tmp_path):
    one, two = machines(tmp_path, 2)
    try:
        alice, a = signed_in_client(one.base_url, "alice")
        bob, b = signed_in_client(two.base_url, "bob")
        room = room_of(a, b)
        async with open_socket(one, alice, room) as alice_ws:
            await recv_until(alice_ws, presence_frame(b["id"], False), timeout=15)
            async with open_socket(two, bob, room) as bob_ws:
                await recv_until(alice_ws, presence_frame(b["id"], True), timeout=15)  # crossed machines
                assert {u["username"]: u["online"] for u in alice.get("/get-users").json()["users"]}["bob"]

                await bob_ws.send('{"type": "typing"}')
                assert (await recv_until(alice_ws, lambda f: f["type"] == "typing", timeout=15)) == {
                    "type": "typing",
                    "user_id": b["id"],
                }
                await bob_ws.send('{"type": "message", "content": "from two", "client_id": "b1"}')
                got = await recv_until(alice_ws, message_frame("from two"), timeout=15)
                echo = await recv_until(bob_ws, message_frame("from two"), timeout=15)
                assert got == echo and echo["message"]["client_id"] == "b1"
                await alice_ws.send('{"type": "message", "content": "from one"}')
                await recv_until(bob_ws, message_frame("from one"), timeout=15)
                last_seen = got["message"]["id"]
            await recv_until(alice_ws, presence_frame(b["id"], False), timeout=15)

        # alice is away while bob writes on the other machine; she resumes with after
        sent = [
            bob.post("/send-message", json={"receiver_id": a["id"], "content": f"late {i}"}).json() for i in range(5)
        ]
        async with open_socket(two, alice, room, after=last_seen) as alice_ws:
            replayed = []
            while len(replayed) < 6:
                frame = await recv_until(alice_ws, lambda f: f["type"] == "message", timeout=15)
                replayed.append(frame["message"]["id"])
        stored = [m["id"] for m in alice.get("/get-messages", params={"user_id": b["id"]}).json()["messages"]]
        assert replayed == [i for i in stored if i > last_seen]
        assert {m["id"] for m in sent} <= set(replayed)
    finally:
        stop_all(one, two)


def test_a_page_cached_on_one_machine_follows_changes_made_on_another(tmp_path):
    one, two = machines(tmp_path, 2)
    try:
        alice, a = signed_in_client(one.base_url, "alice")
        bob, b = signed_in_client(two.base_url, "bob")

        def page() -> list[tuple[str, bool, int]]:  # as bob reads it on machine two
            messages = bob.get("/get-messages", params={"user_id": a["id"]}).json()["messages"]
            return [(m["content"], m["deleted"], len(m["reactions"])) for m in messages]

        sent = [alice.post("/send-message", json={"receiver_id": b["id"], "content": f"m{i}"}).json() for i in range(3)]
        assert page() == [("m0", False, 0), ("m1", False, 0), ("m2", False, 0)]
        assert alice.patch(f"/messages/{sent[0]['id']}", json={"content": "edited"}).status_code == 200
        assert alice.put(f"/messages/{sent[1]['id']}/reactions/%F0%9F%91%8D").status_code == 204
        assert alice.delete(f"/messages/{sent[2]['id']}").status_code == 204
        assert page() == [("edited", False, 0), ("m1", False, 1), ("", True, 0)]

        alice.post("/send-message", json={"receiver_id": b["id"], "content": "last words"})
        assert page()[-1] == ("last words", False, 0)
        # an account deleted on machine one: its messages' content goes on machine two too, as soon as the
        # accounts channel says so (no new row in the room tells the page)
        assert alice.post("/delete-account", json={"password": PASSWORD}).status_code == 204
        erased = [("", False, 0), ("", False, 1), ("", True, 0), ("", False, 0)]
        wait_until(lambda: page() == erased, timeout=2.5)  # well under PAGE_CACHE_SECONDS
    finally:
        stop_all(one, two)


def test_two_workers_start_together_on_a_fresh_database(tmp_path):
    server = Server(workdir=tmp_path, workers=2).start()
    try:
        client, me = signed_in_client(server.base_url, "alice")
        for _ in range(20):  # connections land on either worker
            with httpx.Client(base_url=server.base_url) as fresh:
                assert fresh.get("/healthz").status_code == 200
        assert client.get("/me").json() == {**me, "role": "member", "deactivated": False}
    finally:
        stop_all(server)
    database = backend_settings(tmp_path)["CHAT_DATABASE_URL"].rsplit("/", 1)[1]
    rows = subprocess.run(
        [
            "psql",
            f"postgresql://postgres@127.0.0.1:5432/{database}",
            "-Atc",
            "SELECT count(*) FROM tortoise_migrations",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert rows == str(len(list((ROOT / "migrations").glob("0*.py"))))
    assert psql  # the helper that made the database


def sqlite_and_redis(workdir: Path) -> dict[str, str]:
    """This module's settings with the database left at its default (an SQLite file in the instance folder) and
    Redis kept as the broker: the workers of one machine sharing one SQLite file (docs/scaling.md)."""
    return {key: value for key, value in suite_settings(workdir).items() if key != "CHAT_DATABASE_URL"}


async def test_sqlite_and_redis_two_workers_deliver_a_burst_once_in_order_on_both(tmp_path):
    """`hypercorn --workers 2` on one SQLite file and Redis: both workers migrate a fresh file at once (each
    migration applied once); messages sent through both workers, over sockets and HTTP, get ids that grow
    strictly in commit order, and reach the sockets held by either worker once each, in id order, across
    reconnects with ?after (which may land on the other worker)."""
    env = SECRET | {"CHAT_SEND_LIMIT": "1000000", "CHAT_WS_FRAME_RATE": "1000000"}
    server = Server(workdir=tmp_path, workers=2, env=env, settings=sqlite_and_redis).start()
    clients: list[ResumingClient] = []
    try:
        alice, bob = new_person(server, "alice"), new_person(server, "bob")
        room = alice.room_with(bob)
        # each new connection is accepted by either worker: open sockets until both workers hold some
        holder: dict[int, ResumingClient] = {}
        while len(holder) < 2 or len(clients) < 4:
            assert len(clients) < 40, "every socket landed on one worker"
            client = ResumingClient((alice, bob)[len(clients) % 2], room)
            await client.open(after=0)
            clients.append(client)
            (pid,) = connection_holders(server.port, (client.ws.local_address[1],))
            holder.setdefault(pid, client)
        assert set(holder) <= set(descendants(server.proc.pid))  # two worker processes, not the master
        senders = list(holder.values())  # one socket on each worker sends
        for client in senders:
            client.hang_up_every = 70  # and reconnects with ?after now and then, to either worker
        per_stream = 100
        total = (len(senders) + 2) * per_stream

        async def over_socket(client: ResumingClient, tag: str) -> None:
            for n in range(per_stream):
                await client.send(f"{tag} {n}", f"{tag}-{n}")

        async def over_http(person: Person, other: Person, tag: str, connections: int = 3) -> None:
            numbers = iter(range(per_stream))

            async def sender(http) -> None:
                for n in numbers:
                    body = {"receiver_id": other.id, "content": f"{tag} {n}", "client_id": f"{tag}-{n}"}
                    response = await http.post("/send-message", json=body)
                    assert response.status_code == 201, response.text

            async with person.async_http() as http:
                await asyncio.gather(*(sender(http) for _ in range(connections)))

        def everything(client: ResumingClient):
            return lambda: len(client.received) >= total and not client.pending

        await asyncio.gather(
            *(over_socket(client, f"ws{number}") for number, client in enumerate(senders)),
            over_http(alice, bob, "a-http"),
            over_http(bob, alice, "b-http"),
            *(client.pump(everything(client), timeout=120) for client in clients),
        )
        stored = alice.stored_ids(bob)
        assert len(stored) == total  # every send stored once, resent ones included
        assert stored == sorted(set(stored))
        for client in clients:
            assert client.ids == stored, client.close_codes  # once each, in id order, on either worker
            assert set(client.close_codes) <= {1013}
        assert all(client.hang_ups >= 1 for client in senders)
    finally:
        for client in clients:
            await client.close()
        server.stop()
    # hypercorn's own traceback is allowed (as for test_websocket's burst), none through chat's code: seen once,
    # a connection blocked in hypercorn's hand-over of received frames to a handler that had ended (after a 1013
    # close, its client still sending), cancelled by the graceful timeout at the stop
    assert not app_tracebacks(server.log()), server.log()
    with contextlib.closing(sqlite3.connect(tmp_path / "instance" / "chat.sqlite3")) as connection:
        applied = [row[0] for row in connection.execute("SELECT name FROM tortoise_migrations ORDER BY id")]
    assert applied == MIGRATIONS  # each once, though both workers migrated at start-up


@contextlib.contextmanager
def own_redis(port: int):
    """A private redis-server (not the shared one), so that the test can stop and start it."""

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return proc
            time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    holder = {"proc": start()}

    def restart() -> None:
        holder["proc"] = start()

    def stop() -> None:
        holder["proc"].terminate()
        holder["proc"].wait(10)

    try:
        yield stop, restart
    finally:
        if holder["proc"].poll() is None:
            stop()


async def test_redis_outage_loses_nothing_and_recovers_without_restart(tmp_path):
    port = free_port()
    with own_redis(port) as (stop_redis, start_redis):
        (server,) = machines(tmp_path, 1, CHAT_BROKER_URL=f"redis://127.0.0.1:{port}/0")
        try:
            alice, a = signed_in_client(server.base_url, "alice")
            bob, b = signed_in_client(server.base_url, "bob")
            room = room_of(a, b)
            async with open_socket(server, alice, room) as alice_ws:
                bob.post("/send-message", json={"receiver_id": a["id"], "content": "before"})
                last_seen = (await recv_until(alice_ws, message_frame("before"), timeout=15))["message"]["id"]
                stop_redis()
                # the socket can no longer hear live events: it is told to go, and resumes later
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await recv_until(alice_ws, lambda f: False, timeout=15)
                assert closed.value.rcvd.code in (1011, 1013)

            during = [
                bob.post("/send-message", json={"receiver_id": a["id"], "content": f"during {i}"}) for i in range(3)
            ]
            assert [r.status_code for r in during] == [201, 201, 201]
            assert alice.get("/healthz").json() == {"status": "ok", "broker": "unavailable"}
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with open_socket(server, alice, room, after=last_seen):
                    pass
            assert refused.value.response.status_code == 503

            start_redis()
            wait_until(lambda: alice.get("/healthz").json()["broker"] == "ok")
            async with open_socket(server, alice, room, after=last_seen) as alice_ws:
                for i in range(3):
                    await recv_until(alice_ws, message_frame(f"during {i}"), timeout=15)
                bob.post("/send-message", json={"receiver_id": a["id"], "content": "after"})
                await recv_until(alice_ws, message_frame("after"), timeout=15)
        finally:
            stop_all(server)


async def test_a_killed_worker_leaves_its_users_online_only_until_expiry(tmp_path):
    one, two = machines(tmp_path, 2, CHAT_PRESENCE_TTL_SECONDS="3")
    try:
        alice, a = signed_in_client(one.base_url, "alice")
        bob, b = signed_in_client(two.base_url, "bob")
        room = room_of(a, b)
        async with open_socket(two, bob, room) as bob_ws:
            await recv_until(bob_ws, presence_frame(a["id"], False), timeout=15)
            async with open_socket(one, alice, room):
                await recv_until(bob_ws, presence_frame(a["id"], True), timeout=15)
                os.killpg(one.proc.pid, signal.SIGKILL)  # no goodbye: only the expiry can tell
                started = time.monotonic()
                await recv_until(bob_ws, presence_frame(a["id"], False), timeout=10)
                assert time.monotonic() - started < 3 + 3  # the expiry plus one heartbeat
            users = {u["username"]: u["online"] for u in bob.get("/get-users").json()["users"]}
            assert users["alice"] is False
    finally:
        one.proc.wait(5)
        stop_all(two)


def test_two_machines_serve_each_others_files_through_s3(tmp_path, s3_server):
    """Two hypercorn processes, each with an instance folder of its own (nothing shared on disk), one database and
    an S3 store (moto's server on loopback): a file uploaded to one is attached, listed and served by the other,
    its thumbnail too, and deleting the message on the second deletes the object for both."""
    store = store_settings("s3", tmp_path, s3_server)
    one, two = machines(tmp_path, 2, **store)
    try:
        alice, a = signed_in_client(one.base_url, "alice")
        bob, b = signed_in_client(two.base_url, "bob")
        image = png(400, 300)
        body, content_type = multipart("shot.png", image, "image/png")
        uploaded = alice.post(
            "/files", params={"room": room_of(a, b)}, content=body, headers={"Content-Type": content_type}
        )
        assert uploaded.status_code == 201, uploaded.text
        sent = alice.post(
            "/send-message", json={"receiver_id": b["id"], "content": "", "file_ids": [uploaded.json()["id"]]}
        )
        assert sent.status_code == 201, sent.text
        (attached,) = sent.json()["files"]
        page = bob.get("/get-messages", params={"user_id": a["id"]}).json()["messages"]
        assert page[-1]["files"] == [attached]
        served = bob.get(attached["url"])
        assert served.status_code == 200 and served.content[:8] == image[:8]
        assert served.headers["content-disposition"].startswith("inline")
        assert (attached["width"], attached["height"]) == (400, 300)
        if attached.get("thumbnail_url"):
            assert bob.get(attached["thumbnail_url"]).status_code == 200
        assert not any((tmp_path / f"machine-{i}" / "instance" / "files").exists() for i in range(2))
        assert alice.delete(f"/messages/{sent.json()['id']}").status_code == 204
        wait_until(lambda: alice.get(attached["url"]).status_code == 404, timeout=15)
        assert bob.get(attached["url"]).status_code == 404
    finally:
        stop_all(one, two)
