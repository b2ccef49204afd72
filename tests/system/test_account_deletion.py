"""Deleting one's own account (POST /delete-account) and `chat delete-user`: the name is freed, sessions end, the
others keep their history as from "deleted user", with the content removed (default) or kept."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from chat.page_cache import PAGE_CACHE_SECONDS
from testkit.app import api_login, api_register, assert_error, started_app
from testkit.http import PASSWORD, login, register
from testkit.probes import wait_until
from testkit.ws import new_person, recv_until

from .test_admin_cli import chat


async def converse(alice, a, bob, b) -> None:
    for sender, receiver, text in ((alice, b, "from alice"), (bob, a, "from bob"), (alice, b, "again alice")):
        sent = await sender.post("/send-message", json={"receiver_id": receiver["id"], "content": text})
        assert sent.status_code == 201


async def history(client, other_id: int) -> list[tuple[int, str]]:
    page = await (await client.get(f"/get-messages?user_id={other_id}")).get_json()
    return [(message["sender_id"], message["content"]) for message in page["messages"]]


async def test_deleting_frees_the_name_ends_sessions_and_keeps_the_others_history(signup, make_client):
    alice, a = await signup("alice")
    other_tab = make_client()
    await api_login(other_tab, "alice")
    bob, b = await signup("bob")
    await converse(alice, a, bob, b)
    before = [(a["id"], "from alice"), (b["id"], "from bob"), (a["id"], "again alice")]
    assert await history(bob, a["id"]) == before  # a page now in the worker's cache (page_cache.py)

    await assert_error(await alice.post("/delete-account", json={"password": "wrong password"}), 401)
    await assert_error(await alice.post("/delete-account", json={}), 400, "validation_error")
    assert (await alice.post("/delete-account", json={"password": PASSWORD})).status_code == 204

    for client in (alice, other_tab):
        await assert_error(await client.get("/me"), 401, "unauthorized")
    response = await make_client().post("/login", json={"username": "alice", "password": PASSWORD})
    await assert_error(response, 401, "invalid_credentials")
    # bob keeps the conversation, alice's words removed
    assert await history(bob, a["id"]) == [(a["id"], ""), (b["id"], "from bob"), (a["id"], "")]
    people = (await (await bob.get("/get-users")).get_json())["users"]
    assert [(p["id"], p["username"], p["deleted"]) for p in people] == [(a["id"], "deleted user", True)]
    await assert_error(await bob.post("/send-message", json={"receiver_id": a["id"], "content": "hello?"}), 404)
    # the name and the email are free: a new account takes them
    newcomer = make_client()
    again = await api_register(newcomer, "alice")
    assert again["id"] != a["id"] and again["email"] == "alice@example.org"
    assert (await api_login(newcomer, "alice"))["id"] == again["id"]
    assert await history(newcomer, b["id"]) == []  # nothing of the old account comes with the name


async def test_the_operator_can_keep_the_content(tmp_path):
    async with started_app(tmp_path, deleted_user_content="keep") as app:
        alice, bob = app.test_client(), app.test_client()
        a, b = await api_register(alice, "alice"), await api_register(bob, "bob")
        await api_login(alice, "alice")
        await api_login(bob, "bob")
        await converse(alice, a, bob, b)
        assert (await alice.post("/delete-account", json={"password": PASSWORD})).status_code == 204
        assert await history(bob, a["id"]) == [(a["id"], "from alice"), (b["id"], "from bob"), (a["id"], "again alice")]


async def test_a_deleted_account_is_deleted_once_and_not_administered(signup):
    from chat.models import User

    root, r = await signup("root")
    await User.filter(id=r["id"]).update(is_admin=True)
    alice, a = await signup("alice")
    assert (await alice.post("/delete-account", json={"password": PASSWORD})).status_code == 204
    await assert_error(await root.post(f"/admin/users/{a['id']}/reactivate"), 404, "user_not_found")
    listed = (await (await root.get("/admin/users")).get_json())["users"]
    assert {(u["username"], u["deleted"]) for u in listed} == {("deleted user", True), ("root", False)}


async def test_deleting_closes_the_owners_sockets_on_a_real_server(server):
    alice, bob = new_person(server, "alice"), new_person(server, "bob")
    async with alice.connect(alice.room_with(bob)) as ws:
        await recv_until(ws, lambda frame: frame["type"] == "presence")
        answer = await asyncio.to_thread(alice.http.post, "/delete-account", json={"password": PASSWORD})
        assert answer.status_code == 204
        with pytest.raises(ConnectionClosed):
            await recv_until(ws, lambda frame: False, timeout=2)
        assert ws.close_code == 1008


def test_chat_delete_user(server, tmp_path):
    with httpx.Client(base_url=server.base_url) as alice, httpx.Client(base_url=server.base_url) as bob:
        a, b = register(alice, "alice"), register(bob, "bob")
        login(alice, "alice")
        login(bob, "bob")
        assert alice.post("/send-message", json={"receiver_id": b["id"], "content": "bye"}).status_code == 201

        def page() -> list[tuple[int, str]]:
            messages = bob.get(f"/get-messages?user_id={a['id']}").json()["messages"]
            return [(m["sender_id"], m["content"]) for m in messages]

        assert page() == [(a["id"], "bye")]  # kept in the server's page cache
        deleted = chat(tmp_path, "delete-user", "alice")
        assert deleted.returncode == 0 and "deleted user 1 (alice)" in deleted.stdout, deleted.stderr
        assert chat(tmp_path, "delete-user", "alice").returncode == 1  # the name is gone already
        # at once through Redis; with memory:// the CLI cannot reach the server: within the cache's 5 s
        wait_until(lambda: page() == [(a["id"], "")], timeout=PAGE_CACHE_SECONDS + 5, what=lambda: str(page()))
        assert register(httpx.Client(base_url=server.base_url), "alice")["id"] != a["id"]
