"""The admin role and deactivation (issue 18): the API in-process on both databases, the migration from the previous
schema with data, and a real server (two workers on PostgreSQL + Redis) closing a deactivated user's sockets."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest
from tortoise.connection import get_connection
from tortoise.migrations.executor import MigrationExecutor, MigrationTarget
from websockets.exceptions import ConnectionClosed

from chat.db import tortoise_config
from chat.models import User
from testkit.app import api_login, assert_error, started_app
from testkit.backends import BACKEND
from testkit.http import PASSWORD, login
from testkit.servers import Server
from testkit.ws import new_person, recv_until

from .test_activity_stream import open_me

ADMIN_ACTIONS = (
    ("get", "/admin/users", None),
    ("post", "/admin/users/{id}/deactivate", None),
    ("post", "/admin/users/{id}/reactivate", None),
    ("post", "/admin/users/{id}/role", {"role": "admin"}),
)


async def make_admin(user_id: int) -> None:
    await User.filter(id=user_id).update(is_admin=True)


@pytest.fixture
async def people(app, signup):
    """An admin and two members, each with a signed-in client."""
    admin_client, admin = await signup("root")
    await make_admin(admin["id"])
    alice_client, alice = await signup("alice")
    bob_client, bob = await signup("bob")
    return {"admin": (admin_client, admin), "alice": (alice_client, alice), "bob": (bob_client, bob)}


async def test_me_and_the_people_list_show_roles_and_states(people):
    admin_client, admin = people["admin"]
    alice_client, alice = people["alice"]
    me = await (await admin_client.get("/me")).get_json()
    assert me == {**admin, "role": "admin", "deactivated": False}
    assert (await (await alice_client.get("/me")).get_json())["role"] == "member"
    users = (await (await alice_client.get("/get-users")).get_json())["users"]
    assert {u["username"]: (u["role"], u["deactivated"]) for u in users} == {
        "bob": ("member", False),
        "root": ("admin", False),
    }


async def test_non_admins_get_403_on_every_admin_action_and_strangers_401(people, make_client):
    alice_client, _ = people["alice"]
    _, bob = people["bob"]
    stranger = make_client()
    for method, path, body in ADMIN_ACTIONS:
        url = path.format(id=bob["id"])
        kwargs = {"json": body} if body is not None else {}
        await assert_error(await getattr(alice_client, method)(url, **kwargs), 403, "forbidden")
        await assert_error(await getattr(stranger, method)(url, **kwargs), 401, "unauthorized")
    assert (await (await alice_client.get("/me")).get_json())["deactivated"] is False


async def test_bad_input_is_a_json_4xx(people):
    admin_client, admin = people["admin"]
    _, bob = people["bob"]
    await assert_error(await admin_client.post("/admin/users/999999/deactivate"), 404, "user_not_found")
    await assert_error(await admin_client.post(f"/admin/users/{2**40}/deactivate"), 404, "user_not_found")
    await assert_error(await admin_client.post(f"/admin/users/{admin['id']}/deactivate"), 409, "own_account")
    await assert_error(await admin_client.post(f"/admin/users/{admin['id']}/role", json={"role": "member"}), 409)
    for body in ({"role": "owner"}, {"role": 1}, {}, []):
        await assert_error(await admin_client.post(f"/admin/users/{bob['id']}/role", json=body), 400)


async def test_deactivation_ends_sessions_and_sign_in_until_reactivated(people, make_client):
    admin_client, _ = people["admin"]
    alice_client, alice = people["alice"]
    assert (await alice_client.get("/get-users")).status_code == 200  # the session is cached now
    answer = await admin_client.post(f"/admin/users/{alice['id']}/deactivate")
    assert answer.status_code == 200 and (await answer.get_json())["deactivated"] is True
    await assert_error(await alice_client.get("/get-users"), 401, "unauthorized")
    again = make_client()
    response = await again.post("/login", json={"username": "alice", "password": PASSWORD})
    await assert_error(response, 403, "account_deactivated")
    wrong = await again.post("/login", json={"username": "alice", "password": PASSWORD + "x"})
    await assert_error(wrong, 401, "invalid_credentials")  # nothing said without the password
    listed = (await (await admin_client.get("/admin/users")).get_json())["users"]
    assert [(u["username"], u["role"], u["deactivated"]) for u in listed] == [
        ("alice", "member", True),
        ("bob", "member", False),
        ("root", "admin", False),
    ]
    assert (await admin_client.post(f"/admin/users/{alice['id']}/deactivate")).status_code == 200  # idempotent
    reactivated = await admin_client.post(f"/admin/users/{alice['id']}/reactivate")
    assert (await reactivated.get_json())["deactivated"] is False
    await assert_error(await alice_client.get("/me"), 401)  # the old session stays ended
    assert (await api_login(again, "alice"))["id"] == alice["id"]


async def test_an_admin_grants_and_takes_back_the_role(people):
    admin_client, _ = people["admin"]
    alice_client, alice = people["alice"]
    granted = await admin_client.post(f"/admin/users/{alice['id']}/role", json={"role": "admin"})
    assert (await granted.get_json())["role"] == "admin"
    assert (await alice_client.get("/admin/users")).status_code == 200  # at once, though her session was cached
    await admin_client.post(f"/admin/users/{alice['id']}/role", json={"role": "member"})
    await assert_error(await alice_client.get("/admin/users"), 403, "forbidden")


async def test_admin_routes_check_the_origin(people):
    admin_client, _ = people["admin"]
    _, bob = people["bob"]
    response = await admin_client.post(
        f"/admin/users/{bob['id']}/deactivate", headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403
    assert (await User.get(id=bob["id"])).deactivated_at is None


async def test_the_migration_keeps_existing_accounts_and_messages(tmp_path):
    """From 0001_initial with data to the account life cycle's migration: accounts are members, active."""
    async with started_app(tmp_path, migrate=False) as app:
        settings = app.extensions["chat"].settings
        config = tortoise_config(settings)
        connection = get_connection("default")
        await MigrationExecutor(connection, config["apps"]).migrate([MigrationTarget("models", "0001_initial")])
        now = datetime.now(UTC)
        for number, name in enumerate(("old", "timer"), 1):
            await connection.execute_query(
                "INSERT INTO users (id, username, username_key, email, password_hash, created_at) "
                f"VALUES ({number}, '{name}', '{name}', '{name}@example.org', 'x', {mark(1)})",
                [now],
            )
        await connection.execute_query(
            "INSERT INTO messages (sender_id, receiver_id, room, content, timestamp) "
            f"VALUES (1, 2, 'dm-1-2', 'kept', {mark(1)})",
            [now],
        )
        await MigrationExecutor(connection, config["apps"]).migrate()
        users = await User.all().order_by("id")
        assert [(u.username, u.is_admin, u.deactivated_at) for u in users] == [
            ("old", False, None),
            ("timer", False, None),
        ]
        rows = await connection.execute_query_dict("SELECT content FROM messages")
        assert rows == [{"content": "kept"}]


def mark(number: int) -> str:
    return f"${number}" if BACKEND == "postgres" else "?"


# ---------------------------------------------------------------- a real server


@pytest.fixture
def workers(tmp_path):
    """Two workers where they can share events (PostgreSQL + Redis), one on SQLite + memory://."""
    server = Server(workdir=tmp_path, workers=2 if BACKEND == "postgres" else 1).start()
    yield server
    server.stop()
    assert "Traceback" not in server.log(), server.log()


async def test_a_deactivated_users_sockets_close_at_once_and_requests_are_refused_on_every_worker(workers, tmp_path):
    server = workers
    root, alice, bob = new_person(server, "root"), new_person(server, "alice"), new_person(server, "bob")
    await asyncio.to_thread(_promote, tmp_path, root.id)
    # sessions cached in every worker: many requests over new connections
    for _ in range(12):
        with httpx.Client(base_url=server.base_url, cookies=alice.http.cookies) as fresh:
            assert fresh.get("/me").status_code == 200
    sockets = [alice.connect(alice.room_with(bob)) for _ in range(4)]
    opened = [await socket.__aenter__() for socket in sockets]
    try:
        for ws in opened:
            await recv_until(ws, lambda frame: frame["type"] == "presence")
        answer = await asyncio.to_thread(root.http.post, f"/admin/users/{alice.id}/deactivate")
        assert answer.status_code == 200, answer.text
        loop = asyncio.get_running_loop()
        started = loop.time()
        for ws in opened:
            with pytest.raises(ConnectionClosed):
                await recv_until(ws, lambda frame: False, timeout=1.5)
            assert ws.close_code == 1008
        assert loop.time() - started < 1.5
    finally:
        for socket in sockets:
            await socket.__aexit__(None, None, None)
    for _ in range(12):
        with httpx.Client(base_url=server.base_url, cookies=alice.http.cookies) as fresh:
            assert fresh.get("/me").status_code == 401
    refused = httpx.post(server.base_url + "/login", json={"username": alice.user["username"], "password": PASSWORD})
    assert refused.status_code == 403 and refused.json()["error"] == "account_deactivated"
    people = {u["id"]: u for u in bob.http.get("/get-users").json()["users"]}
    assert people[alice.id]["deactivated"] is True and people[root.id]["role"] == "admin"


async def test_an_admin_takes_over_and_archives_a_private_channel_its_sockets_hear_it(workers, tmp_path):
    """The member's socket on the channel (on either worker) gets the admin's `member` frame and the archived
    `room` frame; the admin's activity stream gets `room_added`; a send after the archive is 409."""
    server = workers
    root, alice, bob = new_person(server, "root"), new_person(server, "alice"), new_person(server, "bob")
    await asyncio.to_thread(_promote, tmp_path, root.id)
    created = alice.http.post("/rooms", json={"name": "hidden", "private": True, "member_ids": [bob.id]})
    room = created.json()["room"]
    async with bob.connect(room) as channel_socket, open_me(root) as activity:
        await recv_until(activity, lambda frame: frame["type"] == "snapshot")
        taken = await asyncio.to_thread(root.http.post, f"/admin/rooms/{room}/take-over")
        assert taken.status_code == 200 and taken.json()["role"] == "owner", taken.text
        member = await recv_until(channel_socket, lambda frame: frame["type"] == "member")
        assert member == {"type": "member", "user_id": root.id, "joined": True, "role": "owner"}
        added = await recv_until(activity, lambda frame: frame["type"] == "room_added")
        assert added["room"]["room"] == room and added["room"]["role"] == "owner"
        assert (await asyncio.to_thread(root.http.post, f"/admin/rooms/{room}/archive")).status_code == 204
        archived = await recv_until(channel_socket, lambda frame: frame["type"] == "room")
        assert archived["room"]["archived"] is True and archived["room"]["room"] == room
    refused = bob.http.post("/send-message", json={"room": room, "content": "hello?"})
    assert refused.status_code == 409 and refused.json()["error"] == "room_archived"
    assert [r["room"] for r in root.http.get("/admin/rooms").json()["rooms"]] == [room]


def _promote(workdir, user_id: int) -> None:
    from testkit.backends import backend_settings, psql

    settings = backend_settings(workdir)
    if settings:
        psql(f"UPDATE users SET is_admin = true WHERE id = {user_id}", settings["CHAT_DATABASE_URL"].rsplit("/", 1)[1])
    else:
        import sqlite3

        with sqlite3.connect(workdir / "instance" / "chat.sqlite3") as connection:
            connection.execute("UPDATE users SET is_admin = 1 WHERE id = ?", (user_id,))


def test_login_helper_still_answers_the_public_fields(server):
    """POST /login and /register keep API.md's three fields; /me adds role and deactivated."""
    with httpx.Client(base_url=server.base_url) as client:
        from testkit.http import register

        assert set(register(client, "carol")) == {"id", "username", "email"}
        assert set(login(client, "carol")) == {"id", "username", "email"}
        assert set(client.get("/me").json()) == {"id", "username", "email", "role", "deactivated"}
