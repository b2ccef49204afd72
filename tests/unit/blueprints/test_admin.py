"""Administrators and channels (issue 18): `GET /admin/rooms`, `POST /admin/rooms/<room>/archive` and
`/take-over`, in process on the configuration under test. (The accounts half of the admin API is tested in
tests/system/test_admin.py beside its real-server tests.)"""

from __future__ import annotations

import pytest

from chat.models import User
from testkit.app import assert_error

ROOM_ACTIONS = (
    ("get", "/admin/rooms"),
    ("post", "/admin/rooms/{room}/archive"),
    ("post", "/admin/rooms/{room}/take-over"),
)


@pytest.fixture
async def team(signup):
    """An admin, and alice who owns a private channel with bob in it (the admin is not in it)."""
    admin_client, admin = await signup("root")
    await User.filter(id=admin["id"]).update(is_admin=True)
    alice_client, alice = await signup("alice")
    bob_client, bob = await signup("bob")
    response = await alice_client.post("/rooms", json={"name": "secret", "private": True, "member_ids": [bob["id"]]})
    assert response.status_code == 201
    channel = await response.get_json()
    return {
        "admin": (admin_client, admin),
        "alice": (alice_client, alice),
        "bob": (bob_client, bob),
        "room": channel["room"],
    }


async def send(client, room: str, content: str):
    return await client.post("/send-message", json={"room": room, "content": content})


async def test_non_admins_get_403_and_strangers_401_and_nothing_changes(team, make_client):
    alice_client, _ = team["alice"]
    bob_client, _ = team["bob"]
    stranger = make_client()
    for method, path in ROOM_ACTIONS:
        url = path.format(room=team["room"])
        for member in (alice_client, bob_client):  # an owner of the channel is not an admin either
            await assert_error(await getattr(member, method)(url), 403, "forbidden")
        await assert_error(await getattr(stranger, method)(url), 401, "unauthorized")
    detail = await (await bob_client.get(f"/rooms/{team['room']}")).get_json()
    assert detail["archived"] is False and detail["member_count"] == 2
    assert (await send(bob_client, team["room"], "still here")).status_code == 201


async def test_an_admin_lists_every_channel_private_and_archived_too(team):
    admin_client, _ = team["admin"]
    alice_client, _ = team["alice"]
    await alice_client.post("/rooms", json={"name": "general"})
    old = await (await alice_client.post("/rooms", json={"name": "old"})).get_json()
    assert (await alice_client.post(f"/rooms/{old['room']}/archive")).status_code == 204
    rooms = (await (await admin_client.get("/admin/rooms")).get_json())["rooms"]
    assert [(r["name"], r["private"], r["archived"], r["role"], r["member_count"]) for r in rooms] == [
        ("general", False, False, None, 1),
        ("old", False, True, None, 1),
        ("secret", True, False, None, 2),
    ]
    assert (await (await admin_client.get("/rooms")).get_json())["rooms"] == []  # listing joins nothing


async def test_an_admin_takes_over_a_private_channel_and_can_then_manage_it(team, signup):
    admin_client, admin = team["admin"]
    alice_client, alice = team["alice"]
    _, bob = team["bob"]
    _, carol = await signup("carol")
    room = team["room"]
    await assert_error(await admin_client.get(f"/rooms/{room}"), 404, "room_not_found")  # not in it yet
    await assert_error(await admin_client.patch(f"/rooms/{room}", json={"topic": "x"}), 404)
    response = await admin_client.post(f"/admin/rooms/{room}/take-over")
    assert response.status_code == 200
    channel = await response.get_json()
    assert (channel["room"], channel["role"], channel["member_count"]) == (room, "owner", 3)
    # Now an owner: the owners' requests work, and the history is the admin's to read.
    renamed = await admin_client.patch(f"/rooms/{room}", json={"name": "handed-over", "topic": "by the admin"})
    assert (await renamed.get_json())["name"] == "handed-over"
    assert (await admin_client.post(f"/rooms/{room}/members", json={"user_ids": [carol["id"]]})).status_code == 204
    assert (await admin_client.delete(f"/rooms/{room}/members/{alice['id']}")).status_code == 204
    assert (await send(admin_client, room, "I look after this now")).status_code == 201
    detail = await (await admin_client.get(f"/rooms/{room}")).get_json()
    assert {(m["id"], m["role"]) for m in detail["members"]} == {
        (admin["id"], "owner"),
        (bob["id"], "member"),
        (carol["id"], "member"),
    }
    await assert_error(await alice_client.get(f"/rooms/{room}"), 404, "room_not_found")
    again = await admin_client.post(f"/admin/rooms/{room}/take-over")  # already an owner: nothing changes
    assert (await again.get_json())["member_count"] == 3


async def test_a_member_admin_who_takes_over_becomes_owner(team):
    admin_client, admin = team["admin"]
    alice_client, _ = team["alice"]
    await alice_client.post(f"/rooms/{team['room']}/members", json={"user_ids": [admin["id"]]})
    channel = await (await admin_client.post(f"/admin/rooms/{team['room']}/take-over")).get_json()
    assert (channel["role"], channel["member_count"]) == ("owner", 3)
    detail = await (await alice_client.get(f"/rooms/{team['room']}")).get_json()
    assert {m["username"]: m["role"] for m in detail["members"]} == {"alice": "owner", "bob": "member", "root": "owner"}


async def test_an_admin_archives_any_channel_and_sends_are_then_409(team):
    admin_client, _ = team["admin"]
    bob_client, _ = team["bob"]
    room = team["room"]
    assert (await send(bob_client, room, "before")).status_code == 201
    assert (await admin_client.post(f"/admin/rooms/{room}/archive")).status_code == 204
    await assert_error(await send(bob_client, room, "after"), 409, "room_archived")
    assert (await admin_client.post(f"/admin/rooms/{room}/archive")).status_code == 204  # idempotent
    history = await (await bob_client.get("/get-messages", query_string={"room": room})).get_json()
    assert [m["content"] for m in history["messages"]] == ["before"]
    assert (await (await bob_client.get(f"/rooms/{room}")).get_json())["archived"] is True


async def test_unknown_rooms_are_404_and_the_origin_is_checked(team):
    admin_client, _ = team["admin"]
    bob_client, bob = team["bob"]
    for name in ("ch-999999", "nonsense", f"dm-1-{bob['id']}", f"ch-{2**70}"):
        for action in ("archive", "take-over"):
            await assert_error(await admin_client.post(f"/admin/rooms/{name}/{action}"), 404, "room_not_found")
    for action in ("archive", "take-over"):
        url = f"/admin/rooms/{team['room']}/{action}"
        response = await admin_client.post(url, headers={"Origin": "https://evil.example"})
        assert response.status_code == 403
    assert (await send(bob_client, team["room"], "not archived")).status_code == 201
    await assert_error(await admin_client.get(f"/rooms/{team['room']}"), 404)
