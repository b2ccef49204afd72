"""POST /send-message, GET /get-messages, POST /mark-read (API.md, "Messages")."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import orjson
import pytest

from chat import conversations
from chat.models import Message, ReadMarker
from chat.rooms import room_for
from chat.state import state
from testkit.app import MESSAGE_FIELDS, assert_error

MAX_ID = 2**31 - 1


@pytest.fixture
async def pair(signup):
    """(alice's client, alice, bob's client, bob)."""
    alice, a = await signup("alice")
    bob, b = await signup("bob")
    return alice, a, bob, b


async def send(client, receiver_id: int, content: str = "hi", **extra):
    return await client.post("/send-message", json={"receiver_id": receiver_id, "content": content, **extra})


async def page(client, **query) -> dict:
    response = await client.get("/get-messages", query_string=query)
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await response.get_json()


async def conversation(sender, receiver_id: int, count: int) -> list[int]:
    ids = []
    for i in range(count):
        response = await send(sender, receiver_id, f"message {i}")
        assert response.status_code == 201
        ids.append((await response.get_json())["id"])
    return ids


# ---------------------------------------------------------------- send


async def test_send_stores_and_returns_the_message(pair):
    alice, a, bob, b = pair
    before = datetime.now(UTC)
    response = await send(bob, a["id"], "  hello, alice  ")
    assert response.status_code == 201
    message = await response.get_json()
    assert set(message) == MESSAGE_FIELDS
    assert message["sender_id"] == b["id"] and message["receiver_id"] == a["id"]
    assert message["room"] == f"dm-{min(a['id'], b['id'])}-{max(a['id'], b['id'])}"
    assert message["content"] == "  hello, alice  "  # stored exactly as sent
    assert message["client_id"] is None
    stamp = datetime.fromisoformat(message["timestamp"])
    assert stamp.utcoffset() == timedelta(0) and before <= stamp <= datetime.now(UTC)
    assert (await page(alice, user_id=b["id"]))["messages"] == [message]


async def test_ids_grow_strictly_and_rooms_are_symmetric(pair):
    alice, a, bob, b = pair
    first = await (await send(alice, b["id"])).get_json()
    second = await (await send(bob, a["id"])).get_json()
    assert second["id"] > first["id"] and first["room"] == second["room"] == room_for(a["id"], b["id"])


async def test_a_repeated_client_id_returns_the_original(pair):
    alice, a, bob, b = pair
    first = await send(alice, b["id"], "once", client_id="c-1")
    assert first.status_code == 201
    original = await first.get_json()
    assert original["client_id"] == "c-1"
    again = await send(alice, b["id"], "different text, same key", client_id="c-1")
    assert again.status_code == 200
    assert await again.get_json() == original
    assert await Message.filter(client_id="c-1").count() == 1
    # the key is the sender's own: bob may use the same one
    assert (await send(bob, a["id"], "bob's", client_id="c-1")).status_code == 201
    # no client_id never deduplicates
    assert (await send(alice, b["id"], "once")).status_code == 201
    assert await Message.all().count() == 3


async def test_concurrent_repeats_of_a_client_id_store_one_message(pair):
    alice, a, _bob, b = pair
    responses = await asyncio.gather(*(send(alice, b["id"], "race", client_id="same") for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201]
    bodies = [await r.get_json() for r in responses]
    assert all(body == bodies[0] for body in bodies)
    assert await Message.all().count() == 1


async def test_send_to_an_unknown_user_is_404(pair):
    alice, *_ = pair
    for receiver_id in (9999, MAX_ID):
        await assert_error(await send(alice, receiver_id), 404, "user_not_found")
    assert await Message.all().count() == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"content": ""}, "content"),
        ({"content": "   \n\t "}, "content"),
        ({"content": "x" * 4001}, "content"),
        ({"client_id": "k" * 65}, "client_id"),
        ({"client_id": ""}, "client_id"),
        ({"receiver_id": "2"}, "receiver_id"),
        ({"receiver_id": 0}, "receiver_id"),
        ({"receiver_id": -1}, "receiver_id"),
        ({"receiver_id": MAX_ID + 1}, "receiver_id"),
        ({"receiver_id": 2.5}, "receiver_id"),
        ({"content": None}, "content"),
    ],
)
async def test_send_validation(pair, change, field):
    alice, _a, _bob, b = pair
    data = {"receiver_id": b["id"], "content": "hi", **change}
    body = await assert_error(await alice.post("/send-message", json=data), 400, "validation_error")
    assert [problem["field"] for problem in body["fields"]] == [field]
    assert await Message.all().count() == 0


async def test_send_accepts_the_bounds(pair):
    alice, _a, _bob, b = pair
    response = await send(alice, b["id"], "x" * 4000, client_id="k" * 64)
    assert response.status_code == 201
    assert len((await response.get_json())["content"]) == 4000


@pytest.mark.parametrize("missing", ["receiver_id", "content"])
async def test_send_requires_receiver_and_content(pair, missing):
    alice, _a, _bob, b = pair
    data = {"receiver_id": b["id"], "content": "hi"}
    del data[missing]
    await assert_error(await alice.post("/send-message", json=data), 400, "validation_error")


async def test_messaging_needs_a_session(client):
    await assert_error(await client.post("/send-message", json={"receiver_id": 1, "content": "hi"}), 401)
    await assert_error(await client.get("/get-messages", query_string={"user_id": 1}), 401, "unauthorized")
    await assert_error(await client.post("/mark-read", json={"user_id": 1, "up_to": 1}), 401, "unauthorized")


# ---------------------------------------------------------------- get-messages


async def test_paging_newest_then_before_then_after(pair):
    alice, a, bob, b = pair
    ids = await conversation(alice, b["id"], 4) + await conversation(bob, a["id"], 3)  # 7 messages

    newest = await page(alice, user_id=b["id"], limit=3)
    assert [m["id"] for m in newest["messages"]] == ids[4:7] and newest["has_more"] is True

    older = await page(alice, user_id=b["id"], limit=3, before=ids[4])
    assert [m["id"] for m in older["messages"]] == ids[1:4] and older["has_more"] is True
    oldest = await page(alice, user_id=b["id"], limit=3, before=ids[1])
    assert [m["id"] for m in oldest["messages"]] == ids[:1] and oldest["has_more"] is False

    newer = await page(bob, user_id=a["id"], limit=3, after=ids[0])
    assert [m["id"] for m in newer["messages"]] == ids[1:4] and newer["has_more"] is True
    rest = await page(bob, user_id=a["id"], limit=3, after=ids[3])
    assert [m["id"] for m in rest["messages"]] == ids[4:7] and rest["has_more"] is False
    assert await page(bob, user_id=a["id"], after=ids[6]) == {"messages": [], "has_more": False}
    everything = await page(bob, user_id=a["id"], after=0)
    assert [m["id"] for m in everything["messages"]] == ids

    exact = await page(alice, user_id=b["id"], limit=7)
    assert [m["id"] for m in exact["messages"]] == ids and exact["has_more"] is False


async def test_a_page_is_answered_from_the_cache_until_its_room_changes(pair, app, monkeypatch):
    alice, a, bob, b = pair
    ids = await conversation(alice, b["id"], 3)
    built = []
    room_history = conversations.room_history

    async def counted(*args, **kwargs):
        built.append(kwargs)
        return await room_history(*args, **kwargs)

    monkeypatch.setattr(conversations, "room_history", counted)

    async def body(client, other: dict) -> bytes:
        response = await client.get("/get-messages", query_string={"user_id": other["id"]})
        assert response.status_code == 200 and response.content_type == "application/json"
        return await response.get_data()

    first = await body(alice, b)
    assert await body(bob, a) == await body(alice, b) == first and len(built) == 1  # one room: one page for both
    assert [m["id"] for m in orjson.loads(first)["messages"]] == ids

    changes = (
        lambda: send(alice, b["id"], "one more"),
        lambda: alice.patch(f"/messages/{ids[0]}", json={"content": "edited"}),
        lambda: bob.put(f"/messages/{ids[1]}/reactions/{quote('👍', safe='')}"),
        lambda: alice.delete(f"/messages/{ids[2]}"),
    )
    for change in changes:
        assert (await change()).status_code in (200, 201, 204)
        fresh = await body(bob, a)
        async with app.app_context():
            state().pages.forget()
        assert fresh == await body(bob, a)  # what the cache answered is what a new build answers
    page_now = orjson.loads(fresh)["messages"]
    assert [m["content"] for m in page_now] == ["edited", "message 1", "", "one more"]
    assert page_now[1]["reactions"][0]["user_ids"] == [b["id"]] and page_now[2]["deleted"] is True
    assert len(built) == 1 + 2 * len(changes)


async def test_default_limit_is_50_and_200_is_the_most(pair):
    alice, a, _bob, b = pair
    room = room_for(a["id"], b["id"])
    await Message.bulk_create(
        [Message(sender_id=a["id"], receiver_id=b["id"], room=room, content=f"m{i}") for i in range(201)]
    )
    default = await page(alice, user_id=b["id"])
    assert len(default["messages"]) == 50 and default["has_more"] is True
    assert [m["content"] for m in default["messages"]] == [f"m{i}" for i in range(151, 201)]
    most = await page(alice, user_id=b["id"], limit=200)
    assert len(most["messages"]) == 200 and most["has_more"] is True
    assert len((await page(alice, user_id=b["id"], limit=1))["messages"]) == 1


async def test_other_conversations_do_not_leak(pair, signup):
    alice, a, bob, b = pair
    carol, c = await signup("carol")
    await conversation(carol, a["id"], 2)
    await conversation(carol, b["id"], 2)
    await conversation(alice, b["id"], 1)
    assert [m["content"] for m in (await page(bob, user_id=a["id"]))["messages"]] == ["message 0"]
    assert len((await page(alice, user_id=c["id"]))["messages"]) == 2


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"user_id": "x"},
        {"user_id": 0},
        {"user_id": 1, "limit": 0},
        {"user_id": 1, "limit": 201},
        {"user_id": 1, "limit": -5},
        {"user_id": 1, "limit": "ten"},
        {"user_id": 1, "before": -1},
        {"user_id": 1, "after": "last"},
        {"user_id": 1, "before": 5, "after": 2},
        {"user_id": MAX_ID + 1},
    ],
)
async def test_get_messages_validation(pair, query):
    alice, *_ = pair
    await assert_error(await alice.get("/get-messages", query_string=query), 400, "validation_error")


async def test_get_messages_of_an_unknown_user_is_404(pair):
    alice, *_ = pair
    await assert_error(await alice.get("/get-messages", query_string={"user_id": 9999}), 404, "user_not_found")


# ---------------------------------------------------------------- mark-read


async def marker(user_id: int, other_id: int) -> int | None:
    found = await ReadMarker.get_or_none(user_id=user_id, room=room_for(user_id, other_id))
    return None if found is None else found.up_to


async def test_mark_read_moves_forward_only_and_is_clamped(pair):
    alice, a, bob, b = pair
    ids = await conversation(bob, a["id"], 5)

    async def mark(up_to: int) -> None:
        response = await alice.post("/mark-read", json={"user_id": b["id"], "up_to": up_to})
        assert response.status_code == 204
        assert await response.get_data() == b""

    await mark(ids[2])
    assert await marker(a["id"], b["id"]) == ids[2]
    await mark(ids[0])  # never backwards
    assert await marker(a["id"], b["id"]) == ids[2]
    await mark(0)
    assert await marker(a["id"], b["id"]) == ids[2]
    await mark(MAX_ID)  # clamped to the newest message of the room
    assert await marker(a["id"], b["id"]) == ids[4]
    assert await marker(b["id"], a["id"]) is None  # bob's own marker is untouched


async def test_mark_read_in_an_empty_room_stores_nothing(pair):
    alice, _a, _bob, b = pair
    assert (await alice.post("/mark-read", json={"user_id": b["id"], "up_to": 10})).status_code == 204
    assert await ReadMarker.all().count() == 0


async def test_mark_read_of_an_unknown_user_is_404(pair):
    alice, *_ = pair
    await assert_error(await alice.post("/mark-read", json={"user_id": 9999, "up_to": 1}), 404, "user_not_found")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"user_id": 2}, "up_to"),
        ({"up_to": 1}, "user_id"),
        ({"user_id": 2, "up_to": -1}, "up_to"),
        ({"user_id": 2, "up_to": "7"}, "up_to"),
        ({"user_id": "2", "up_to": 7}, "user_id"),
        ({"user_id": 0, "up_to": 7}, "user_id"),
        ({"user_id": 2, "up_to": MAX_ID + 1}, "up_to"),
    ],
)
async def test_mark_read_validation(pair, data, field):
    alice, *_ = pair
    body = await assert_error(await alice.post("/mark-read", json=data), 400, "validation_error")
    assert [problem["field"] for problem in body["fields"]] == [field]
