"""The /rooms API and channel messages over HTTP (API.md "Rooms: direct conversations and channels", "Mentions"):
every endpoint and error of the table, in process (Quart's test client) on the configuration under test."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .support import assert_error


@pytest.fixture
async def trio(signup):
    people = [await signup(name) for name in ("alice", "bob", "carol")]
    return people


async def create(client, **body) -> dict:
    response = await client.post("/rooms", json=body)
    assert response.status_code == 201, await response.get_data(as_text=True)
    return await response.get_json()


async def send(client, room: str, content: str, **extra):
    return await client.post("/send-message", json={"room": room, "content": content, **extra})


async def test_create_list_read_and_the_callers_view(trio):
    (alice, a), (bob, b), (carol, c) = trio
    channel = await create(alice, name="General", topic="all of us", member_ids=[b["id"]])
    assert channel["room"] == f"ch-{channel['id']}" and channel["role"] == "owner" and channel["member_count"] == 2
    assert (channel["name"], channel["topic"], channel["private"], channel["archived"]) == (
        "General",
        "all of us",
        False,
        False,
    )
    assert (channel["unread"], channel["mentions"], channel["last_message_id"], channel["created_by"]) == (
        0,
        0,
        0,
        a["id"],
    )
    await assert_error(await alice.post("/rooms", json={"name": "general"}), 409, "room_name_taken")
    await assert_error(await alice.post("/rooms", json={"name": "x", "member_ids": [9999]}), 404, "user_not_found")
    for bad in ({"name": ""}, {"name": "a b"}, {"name": "x" * 81}, {"name": "ok", "topic": "t" * 251}, {}):
        await assert_error(await alice.post("/rooms", json=bad), 400, "validation_error")
    await create(alice, name="secret", private=True)
    joined = (await (await bob.get("/rooms")).get_json())["rooms"]
    assert [room["name"] for room in joined] == ["General"] and joined[0]["role"] == "member"
    public = (await (await carol.get("/rooms", query_string={"scope": "public"})).get_json())["rooms"]
    assert [(room["name"], room["role"]) for room in public] == [("General", None)]
    await assert_error(await carol.get("/rooms", query_string={"scope": "all"}), 400, "validation_error")
    detail = await (await bob.get(f"/rooms/{channel['room']}")).get_json()
    assert {(m["id"], m["role"]) for m in detail["members"]} == {(a["id"], "owner"), (b["id"], "member")}
    await assert_error(await carol.get("/rooms/ch-999999"), 404, "room_not_found")
    await assert_error(await carol.get("/rooms/nonsense"), 404, "room_not_found")


async def test_private_channels_are_hidden_and_refuse_non_members(trio):
    (alice, _a), (bob, b), (carol, _c) = trio
    secret = await create(alice, name="secret", private=True, member_ids=[b["id"]])
    room = secret["room"]
    await assert_error(await carol.get(f"/rooms/{room}"), 404, "room_not_found")
    await assert_error(await carol.post(f"/rooms/{room}/join"), 403, "forbidden")
    await assert_error(await send(carol, room, "let me in"), 403, "forbidden")
    await assert_error(await carol.get("/get-messages", query_string={"room": room}), 403, "forbidden")
    await assert_error(await carol.post("/mark-read", json={"room": room, "up_to": 1}), 403, "forbidden")
    await assert_error(await carol.patch(f"/rooms/{room}", json={"topic": "mine"}), 404, "room_not_found")
    await assert_error(await bob.patch(f"/rooms/{room}", json={"topic": "mine"}), 403, "forbidden")
    await assert_error(await bob.post(f"/rooms/{room}/archive"), 403, "forbidden")
    await assert_error(await bob.post(f"/rooms/{room}/members", json={"user_ids": [1]}), 403, "forbidden")


async def test_messages_history_read_markers_unread_and_mentions(trio):
    (alice, a), (bob, b), (carol, c) = trio
    channel = await create(alice, name="team", member_ids=[b["id"], c["id"]])
    room = channel["room"]
    first = await send(alice, room, "hello @Bob and @carol.", client_id="k1")
    assert first.status_code == 201
    message = await first.get_json()
    assert message["receiver_id"] is None and message["room"] == room
    assert message["mentions"] == sorted([b["id"], c["id"]])
    again = await send(alice, room, "hello again", client_id="k1")
    assert again.status_code == 200 and (await again.get_json())["id"] == message["id"]
    second = await (await send(carol, room, "no mention of email@bob here, @nobody")).get_json()
    assert second["mentions"] == []
    page = await (await bob.get("/get-messages", query_string={"room": room})).get_json()
    assert [m["id"] for m in page["messages"]] == [message["id"], second["id"]] and page["has_more"] is False
    assert page["messages"][0]["mentions"] == message["mentions"]
    [view] = (await (await bob.get("/rooms")).get_json())["rooms"]
    assert (view["unread"], view["mentions"], view["last_message_id"]) == (2, 1, second["id"])
    assert (await bob.post("/mark-read", json={"room": room, "up_to": message["id"]})).status_code == 204
    [view] = (await (await bob.get("/rooms")).get_json())["rooms"]
    assert (view["unread"], view["mentions"]) == (1, 0)
    [alice_view] = (await (await alice.get("/rooms")).get_json())["rooms"]
    assert alice_view["unread"] == 1  # her own message does not count
    # a direct room by name works too, and mentions count in /get-users
    dm = await (
        await alice.post(
            "/send-message",
            json={"room": f"dm-{min(a['id'], b['id'])}-{max(a['id'], b['id'])}", "content": "@bob psst"},
        )
    ).get_json()
    assert dm["receiver_id"] == b["id"] and dm["mentions"] == [b["id"]]
    users = (await (await bob.get("/get-users")).get_json())["users"]
    assert next(u for u in users if u["id"] == a["id"])[("mentions")] == 1
    for body in ({"content": "x"}, {"room": room, "receiver_id": a["id"], "content": "x"}, {"room": 5, "content": "x"}):
        await assert_error(await alice.post("/send-message", json=body), 400, "validation_error")
    await assert_error(await send(alice, "ch-0", "x"), 404, "room_not_found")
    await assert_error(await send(alice, "ch-424242", "x"), 404, "room_not_found")
    await assert_error(await alice.get("/get-messages"), 400, "validation_error")


async def test_join_leave_members_roles_and_archive(trio):
    (alice, a), (bob, b), (carol, c) = trio
    channel = await create(alice, name="open")
    room = channel["room"]
    joined = await (await bob.post(f"/rooms/{room}/join")).get_json()
    assert joined["role"] == "member" and joined["member_count"] == 2
    assert (await bob.post(f"/rooms/{room}/join")).status_code == 200  # twice is no error
    await assert_error(await alice.post(f"/rooms/{room}/leave"), 409, "last_owner")
    assert (
        await alice.post(f"/rooms/{room}/members", json={"user_ids": [b["id"]], "role": "owner"})
    ).status_code == 204
    assert (await alice.post(f"/rooms/{room}/leave")).status_code == 204
    await assert_error(await alice.post(f"/rooms/{room}/leave"), 404)
    assert (await bob.post(f"/rooms/{room}/members", json={"user_ids": [c["id"]]})).status_code == 204
    await assert_error(await bob.post(f"/rooms/{room}/members", json={"user_ids": [9999]}), 404, "user_not_found")
    await assert_error(await bob.post(f"/rooms/{room}/members", json={"user_ids": []}), 400, "validation_error")
    await assert_error(await carol.delete(f"/rooms/{room}/members/{b['id']}"), 403, "forbidden")
    assert (await bob.delete(f"/rooms/{room}/members/{c['id']}")).status_code == 204
    await assert_error(await bob.delete(f"/rooms/{room}/members/{c['id']}"), 404)
    await assert_error(await bob.delete(f"/rooms/{room}/members/abc"), 404)
    renamed = await (await bob.patch(f"/rooms/{room}", json={"name": "renamed", "topic": "t"})).get_json()
    assert (renamed["name"], renamed["topic"]) == ("renamed", "t")
    other = await create(carol, name="taken")
    await assert_error(await bob.patch(f"/rooms/{room}", json={"name": "TAKEN"}), 409, "room_name_taken")
    assert other["name"] == "taken"
    assert (await bob.post(f"/rooms/{room}/archive")).status_code == 204
    await assert_error(await send(bob, room, "anyone?"), 409, "room_archived")
    await assert_error(await carol.post(f"/rooms/{room}/join"), 409, "room_archived")
    public = (await (await carol.get("/rooms", query_string={"scope": "public"})).get_json())["rooms"]
    assert room not in [r["room"] for r in public]
    history = await (await bob.get("/get-messages", query_string={"room": room})).get_json()
    assert history["messages"] == []


async def test_every_rooms_endpoint_needs_a_session(client):
    for method, path in (
        ("POST", "/rooms"),
        ("GET", "/rooms"),
        ("GET", "/rooms/ch-1"),
        ("PATCH", "/rooms/ch-1"),
        ("POST", "/rooms/ch-1/join"),
        ("POST", "/rooms/ch-1/leave"),
        ("POST", "/rooms/ch-1/members"),
        ("DELETE", "/rooms/ch-1/members/1"),
        ("POST", "/rooms/ch-1/archive"),
    ):
        await assert_error(await client.open(path, method=method, json={}), 401, "unauthorized")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
FIELDS = ("name", "topic", "private", "member_ids", "user_ids", "role", "room", "content", "up_to", "receiver_id")
BODIES = st.one_of(JSON_VALUES, st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=5))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES, target=st.sampled_from(["ch-1", "ch-0", "dm-1-2", "x", "ch-99999999999"]))
async def test_bad_input_gets_a_json_answer_never_a_server_error(trio, body, target):
    (alice, _a), *_ = trio
    for method, path in (
        ("POST", "/rooms"),
        ("PATCH", f"/rooms/{target}"),
        ("POST", f"/rooms/{target}/members"),
        ("DELETE", f"/rooms/{target}/members/1"),
        ("POST", f"/rooms/{target}/join"),
        ("POST", "/send-message"),
        ("POST", "/mark-read"),
    ):
        response = await alice.open(path, method=method, json=body)
        assert response.status_code < 500, (path, body, await response.get_data(as_text=True))
        assert response.mimetype == "application/json" or response.status_code == 204
