"""The whole API against a real hypercorn process on a real SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx

from .support import BACKEND, PASSWORD, Server, login, register, signed_in_client, wait_until
from .support import database_rows as rows_of

CLIENTS = 50
MESSAGES_EACH = 20


def database_rows(server: Server, sql: str) -> list[tuple]:
    return rows_of(server.workdir, sql)


def test_register_login_send_page_logout_and_the_old_cookie_is_refused(server):
    with httpx.Client(base_url=server.base_url, timeout=10) as alice, httpx.Client(base_url=server.base_url) as bob:
        a = register(alice, "alice")
        b = register(bob, "bob")
        assert alice.get("/me").status_code == 401  # registering starts no session

        response = alice.post("/login", json={"email": "alice@example.org", "password": PASSWORD})
        assert response.status_code == 200 and response.json() == a
        cookie_header = response.headers["set-cookie"]
        flags = [part.strip().lower() for part in cookie_header.split(";")]
        assert "httponly" in flags and "samesite=lax" in flags and "secure" not in flags  # CHAT_COOKIE_SECURE=false
        old_cookie = alice.cookies["chat_session"]
        login(bob, "bob")

        sent = [alice.post("/send-message", json={"receiver_id": b["id"], "content": f"hello {i}"}) for i in range(3)]
        assert [r.status_code for r in sent] == [201, 201, 201]
        repeat = alice.post("/send-message", json={"receiver_id": b["id"], "content": "x", "client_id": "k"})
        again = alice.post("/send-message", json={"receiver_id": b["id"], "content": "x", "client_id": "k"})
        assert (repeat.status_code, again.status_code) == (201, 200) and repeat.json() == again.json()

        newest = bob.get("/get-messages", params={"user_id": a["id"], "limit": 2}).json()
        assert [m["content"] for m in newest["messages"]] == ["hello 2", "x"] and newest["has_more"] is True
        older = bob.get("/get-messages", params={"user_id": a["id"], "before": newest["messages"][0]["id"]}).json()
        assert [m["content"] for m in older["messages"]] == ["hello 0", "hello 1"] and older["has_more"] is False
        assert bob.get("/get-users").json()["users"] == [
            {"id": a["id"], "username": "alice", "online": False, "unread": 4}
        ]
        assert alice.get("/get-users").json()["users"][0]["unread"] == 0
        assert bob.post("/mark-read", json={"user_id": a["id"], "up_to": sent[1].json()["id"]}).status_code == 204
        assert bob.get("/get-users").json()["users"][0]["unread"] == 2

        assert alice.post("/logout").status_code == 204
        assert alice.get("/me").status_code == 401
        with httpx.Client(base_url=server.base_url, cookies={"chat_session": old_cookie}) as replay:
            refused = replay.get("/me")
            assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
            assert replay.post("/send-message", json={"receiver_id": b["id"], "content": "late"}).status_code == 401
        browser = bob.get("/logout", headers={"Accept": "text/html,*/*;q=0.8"})
        assert browser.status_code in (302, 303) and browser.headers["location"].endswith("/login-page")
        assert bob.get("/me").status_code == 401

        assert httpx.get(server.base_url + "/healthz").json() == {"status": "ok", "broker": "ok"}
        assert "/send-message" in httpx.get(server.base_url + "/openapi.json").json()["paths"]
    assert PASSWORD not in server.log()


async def call_until_not_busy(client: httpx.AsyncClient, path: str, data: dict) -> httpx.Response:
    """POST, retrying while the bcrypt gate answers 503 busy (as its Retry-After asks); anything else is returned."""
    for _ in range(30):
        response = await client.post(path, json=data)
        if response.status_code != 503:
            return response
        await asyncio.sleep(float(response.headers["Retry-After"]))
    raise AssertionError(f"{path} stayed busy")


async def test_concurrent_clients_store_every_message_exactly_once(server):
    names = [f"user{i:02d}" for i in range(CLIENTS)]
    clients = [httpx.AsyncClient(base_url=server.base_url, timeout=60) for _ in names]
    try:

        async def sign_up(client: httpx.AsyncClient, name: str) -> dict:
            data = {"username": name, "email": f"{name}@example.org", "password": PASSWORD}
            assert (await call_until_not_busy(client, "/register", data)).status_code == 201
            response = await call_until_not_busy(client, "/login", {"username": name, "password": PASSWORD})
            assert response.status_code == 200, response.text
            return response.json()

        users = await asyncio.gather(*(sign_up(c, n) for c, n in zip(clients, names, strict=True)))

        async def chat(index: int) -> list[int]:
            client, partner = clients[index], users[(index + 1) % CLIENTS]
            statuses = []
            for k in range(MESSAGES_EACH):
                data = {"receiver_id": partner["id"], "content": f"{names[index]} #{k}", "client_id": f"{index}-{k}"}
                statuses.append((await client.post("/send-message", json=data)).status_code)
            return statuses

        statuses = await asyncio.gather(*(chat(i) for i in range(CLIENTS)))
        assert all(status == 201 for per_client in statuses for status in per_client), statuses

        # every conversation holds exactly its sender's messages, in order
        for index, client in enumerate(clients):
            partner = users[(index + 1) % CLIENTS]
            page = (await client.get("/get-messages", params={"user_id": partner["id"], "limit": 200})).json()
            assert [m["content"] for m in page["messages"]] == [f"{names[index]} #{k}" for k in range(MESSAGES_EACH)]
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))

    total = CLIENTS * MESSAGES_EACH
    assert database_rows(server, "SELECT COUNT(*), COUNT(DISTINCT sender_id || ':' || client_id) FROM messages") == [
        (total, total)
    ]
    assert " 500 " not in server.log()


def test_data_and_sessions_survive_a_restart(server):
    alice, a = signed_in_client(server.base_url, "alice")
    bob, b = signed_in_client(server.base_url, "bob")
    first = alice.post("/send-message", json={"receiver_id": b["id"], "content": "before the restart"}).json()

    server.restart()

    # the session lives in the database and the signing key in the instance folder: the same cookie still works
    assert alice.get("/me").json() == a
    assert [m["content"] for m in bob.get("/get-messages", params={"user_id": a["id"]}).json()["messages"]] == [
        "before the restart"
    ]
    second = bob.post("/send-message", json={"receiver_id": a["id"], "content": "after"}).json()
    assert second["id"] > first["id"]
    with httpx.Client(base_url=server.base_url) as again:
        assert login(again, "alice") == a
    assert database_rows(server, "SELECT COUNT(*) FROM tortoise_migrations") == [(1,)]
    alice.close()
    bob.close()


def worker_pids(server: Server) -> list[int]:
    """The hypercorn worker processes (the parent's spawned children, not multiprocessing's resource tracker)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            if ppid == server.proc.pid and "spawn_main" in cmdline:
                pids.append(int(entry.name))
    return pids


@contextlib.contextmanager
def paused(pid: int) -> Iterator[None]:
    """Freeze one worker: it cannot accept, so the shared listening socket's connections go to the other."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_two_workers_start_together_on_a_fresh_database(tmp_path):
    server = Server(workdir=tmp_path, workers=2)
    assert not (tmp_path / "instance").exists()
    server.start()
    try:
        # the first healthz answer may come from one worker while the other is still starting: wait for both
        wait_until(lambda: server.log().count("Running on") >= 2, what=server.log)
        assert server.log().count("Running on") == 2
        workers = worker_pids(server)
        assert len(workers) == 2, workers

        for index, stopped in enumerate(workers):  # each worker in turn serves alone
            with paused(stopped):
                assert httpx.get(server.base_url + "/healthz", timeout=10).json() == {"status": "ok", "broker": "ok"}
                with httpx.Client(base_url=server.base_url, timeout=10) as client:
                    register(client, f"via{index}")
                    assert login(client, f"via{index}")["username"] == f"via{index}"

        assert sorted(database_rows(server, "SELECT app, name FROM tortoise_migrations")) == [
            ("models", "0001_initial"),
            ("models", "0002_search"),
        ]
        assert database_rows(server, "SELECT COUNT(*) FROM users") == [(2,)]
        if BACKEND == "sqlite":
            assert database_rows(server, "PRAGMA journal_mode") == [("wal",)]
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()
    assert "secret_key" in os.listdir(tmp_path / "instance")
