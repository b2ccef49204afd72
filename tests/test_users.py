"""GET /get-users (API.md, "Users")."""

from __future__ import annotations

from .support import api_register, assert_error


async def send(client, receiver_id: int, content: str) -> dict:
    response = await client.post("/send-message", json={"receiver_id": receiver_id, "content": content})
    assert response.status_code == 201, await response.get_data(as_text=True)
    return await response.get_json()


async def users_of(client) -> list[dict]:
    response = await client.get("/get-users")
    assert response.status_code == 200, await response.get_data(as_text=True)
    return (await response.get_json())["users"]


async def test_everyone_but_the_caller_ordered_by_username(signup, make_client):
    for name in ("carol", "Bob", "dave", "alice_2"):
        await api_register(make_client(), name)
    me, _ = await signup("Erin")
    users = await users_of(me)
    assert [u["username"] for u in users] == ["alice_2", "Bob", "carol", "dave"]
    assert all(set(u) == {"id", "username", "online", "unread", "mentions"} for u in users)
    assert all(u["online"] is False and u["unread"] == 0 for u in users)


async def test_alone_the_list_is_empty(signup):
    me, _ = await signup("alice")
    assert await users_of(me) == []


async def test_unread_counts_follow_the_read_markers(signup):
    alice, a = await signup("alice")
    bob, b = await signup("bob")
    carol, c = await signup("carol")
    from_bob = [await send(bob, a["id"], f"bob {i}") for i in range(3)]
    await send(carol, a["id"], "carol 0")
    await send(alice, b["id"], "my own message is never unread to me")
    await send(carol, b["id"], "not in alice's rooms")

    def unread(users):
        return {u["username"]: u["unread"] for u in users}

    assert unread(await users_of(alice)) == {"bob": 3, "carol": 1}
    assert unread(await users_of(bob)) == {"alice": 1, "carol": 1}

    response = await alice.post("/mark-read", json={"user_id": b["id"], "up_to": from_bob[1]["id"]})
    assert response.status_code == 204
    assert unread(await users_of(alice)) == {"bob": 1, "carol": 1}

    await alice.post("/mark-read", json={"user_id": b["id"], "up_to": from_bob[2]["id"]})
    await alice.post("/mark-read", json={"user_id": c["id"], "up_to": 2**31 - 1})  # clamped to the newest
    assert unread(await users_of(alice)) == {"bob": 0, "carol": 0}
    await send(carol, a["id"], "new after the clamp")
    assert unread(await users_of(alice)) == {"bob": 0, "carol": 1}
    # alice reading did not touch bob's view
    assert unread(await users_of(bob)) == {"alice": 1, "carol": 1}


async def test_get_users_needs_a_session(client):
    await assert_error(await client.get("/get-users"), 401, "unauthorized")
