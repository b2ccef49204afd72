"""Changing messages over HTTP (API.md "Changing messages: edit, delete, react, reply"): every row of the table and
its errors, in process on the configuration under test."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat.changes import is_single_emoji
from chat.models import Mention, Message, Reaction
from testkit.app import assert_error


@pytest.fixture
async def trio(signup):
    return [await signup(name) for name in ("alice", "bob", "carol")]


async def channel(owner, *member_ids: int) -> str:
    response = await owner.post("/rooms", json={"name": "general", "member_ids": list(member_ids)})
    assert response.status_code == 201, await response.get_data(as_text=True)
    return (await response.get_json())["room"]


async def send(client, room: str, content: str = "hi", **extra) -> dict:
    response = await client.post("/send-message", json={"room": room, "content": content, **extra})
    assert response.status_code == 201, await response.get_data(as_text=True)
    return await response.get_json()


async def history(client, room: str) -> list[dict]:
    response = await client.get("/get-messages", query_string={"room": room})
    assert response.status_code == 200
    return (await response.get_json())["messages"]


def reaction_path(message_id: int, emoji: str) -> str:
    return f"/messages/{message_id}/reactions/{quote(emoji, safe='')}"  # "/" too: the emoji is one segment


async def test_a_new_message_has_the_defaults_and_replies_name_a_message_of_the_same_room(trio):
    (alice, a), (bob, b), _ = trio
    room = await channel(alice, b["id"])
    first = await send(alice, room, "question?")
    assert (first["edited_at"], first["deleted"], first["reply_to"], first["reactions"]) == (None, False, None, [])
    answer = await send(bob, room, "answer", reply_to=first["id"])
    assert answer["reply_to"] == first["id"]
    assert (await history(alice, room))[-1]["reply_to"] == first["id"]
    # a message of another room, an id that is no message, a change's event row: 400
    elsewhere = await alice.post("/send-message", json={"receiver_id": b["id"], "content": "dm"})
    dm = await elsewhere.get_json()
    for reply_to in (dm["id"], 10**6):
        response = await alice.post("/send-message", json={"room": room, "content": "x", "reply_to": reply_to})
        await assert_error(response, 400, "validation_error")
    await alice.put(reaction_path(first["id"], "👍"))
    event_id = (await Message.filter(event="react").first()).id
    response = await alice.post("/send-message", json={"room": room, "content": "x", "reply_to": event_id})
    await assert_error(response, 400, "validation_error")
    for reply_to in (0, -1, "1", 1.5, True):
        response = await alice.post("/send-message", json={"room": room, "content": "x", "reply_to": reply_to})
        await assert_error(response, 400, "validation_error")


async def test_edit_by_the_sender_only(trio):
    (alice, a), (bob, b), (carol, c) = trio
    room = await channel(alice, b["id"])
    message = await send(alice, room, "helo @bob")
    response = await alice.patch(f"/messages/{message['id']}", json={"content": "hello @carol"})
    assert response.status_code == 200
    edited = await response.get_json()
    assert edited["content"] == "hello @carol" and edited["edited_at"] is not None
    assert edited["mentions"] == []  # carol is not a member; bob is no longer named
    assert not await Mention.filter(message_id=message["id"]).exists()
    assert (await history(bob, room))[-1] == edited
    await assert_error(await bob.patch(f"/messages/{message['id']}", json={"content": "x"}), 403, "forbidden")
    # carol cannot see it: 404, as for an id that is no message
    await assert_error(await carol.patch(f"/messages/{message['id']}", json={"content": "x"}), 404, "message_not_found")
    await assert_error(await alice.patch("/messages/999999", json={"content": "x"}), 404, "message_not_found")
    await assert_error(await alice.patch(f"/messages/{2**31}", json={"content": "x"}), 404, "message_not_found")
    for body in ({}, {"content": ""}, {"content": "   "}, {"content": "x" * 4001}, {"content": 5}):
        await assert_error(await alice.patch(f"/messages/{message['id']}", json=body), 400, "validation_error")
    await alice.delete(f"/messages/{message['id']}")
    response = await alice.patch(f"/messages/{message['id']}", json={"content": "again"})
    await assert_error(response, 409, "message_deleted")


async def test_delete_by_the_sender_or_a_channel_owner_leaves_a_tombstone(trio):
    (alice, a), (bob, b), (carol, c) = trio
    room = await channel(alice, b["id"], c["id"])
    by_bob = await send(bob, room, "secret words @carol")
    by_carol = await send(carol, room, "mine")
    await bob.put(reaction_path(by_bob["id"], "👍"))
    await assert_error(await carol.delete(f"/messages/{by_bob['id']}"), 403, "forbidden")  # neither sender nor owner
    assert (await bob.delete(f"/messages/{by_bob['id']}")).status_code == 204
    assert (await bob.delete(f"/messages/{by_bob['id']}")).status_code == 204  # again: nothing more
    assert (await alice.delete(f"/messages/{by_carol['id']}")).status_code == 204  # the owner
    tombstones = (await history(carol, room))[-2:]
    for tombstone in tombstones:
        assert tombstone["deleted"] is True and tombstone["content"] == "" and tombstone["reactions"] == []
        assert tombstone["mentions"] == []
    # gone from the database, not only hidden
    row = await Message.get(id=by_bob["id"])
    assert (row.content, row.mentions, row.deleted) == ("", "", True)
    assert not await Mention.filter(message_id=by_bob["id"]).exists()
    assert not await Reaction.filter(message_id=by_bob["id"]).exists()
    assert await Message.filter(event="delete").count() == 2
    # in a direct room only the sender deletes
    dm = await (await alice.post("/send-message", json={"receiver_id": b["id"], "content": "dm"})).get_json()
    await assert_error(await bob.delete(f"/messages/{dm['id']}"), 403, "forbidden")
    await assert_error(await carol.delete(f"/messages/{dm['id']}"), 404, "message_not_found")
    await assert_error(await alice.delete("/messages/999999"), 404, "message_not_found")


async def test_a_history_page_shows_the_reactions_of_the_messages_that_have_some_and_none_elsewhere(trio):
    # the page's query says which messages have reactions, and only those are read (conversations._page)
    (alice, a), (bob, b), _ = trio
    room = await channel(alice, b["id"])
    sent = [await send(alice, room, f"m{number}") for number in range(5)]
    assert [m["reactions"] for m in await history(alice, room)] == [[]] * 5
    for message, emoji in ((sent[1], "👍"), (sent[3], "🎉")):
        assert (await bob.put(reaction_path(message["id"], emoji))).status_code == 204
    assert (await alice.put(reaction_path(sent[3]["id"], "🎉"))).status_code == 204
    expected = [[], [{"emoji": "👍", "count": 1, "user_ids": [b["id"]]}], [],
                [{"emoji": "🎉", "count": 2, "user_ids": [b["id"], a["id"]]}], []]  # fmt: skip
    assert [m["reactions"] for m in await history(alice, room)] == expected
    older = await alice.get("/get-messages", query_string={"room": room, "before": sent[4]["id"], "limit": 2})
    assert [m["reactions"] for m in (await older.get_json())["messages"]] == expected[2:4]
    # taken back: none again
    assert (await bob.delete(reaction_path(sent[1]["id"], "👍"))).status_code == 204
    assert [m["reactions"] for m in await history(alice, room)][1] == []


async def test_reactions_are_idempotent_counted_by_first_use_and_validated(trio):
    (alice, a), (bob, b), (carol, c) = trio
    room = await channel(alice, b["id"], c["id"])
    message = await send(alice, room, "ship it?")
    path = reaction_path(message["id"], "👍")
    for client in (bob, bob, alice):
        assert (await client.put(path)).status_code == 204
    assert (await carol.put(reaction_path(message["id"], "🎉"))).status_code == 204
    assert (await history(alice, room))[-1]["reactions"] == [
        {"emoji": "👍", "count": 2, "user_ids": [b["id"], a["id"]]},
        {"emoji": "🎉", "count": 1, "user_ids": [c["id"]]},
    ]
    for _ in range(2):
        assert (await bob.delete(path)).status_code == 204
    assert (await history(alice, room))[-1]["reactions"][0] == {"emoji": "👍", "count": 1, "user_ids": [a["id"]]}
    assert await Message.filter(event__in=("react", "unreact")).count() == 4  # only the changes made events
    for emoji in ("a", "👍👍", "x👍", " ", "👍 ", "🇫", "1", "→", "👍" + "\u200d" * 40):
        await assert_error(await bob.put(reaction_path(message["id"], emoji)), 400, "validation_error")
    await assert_error(await bob.put(reaction_path(999999, "👍")), 404, "message_not_found")
    await assert_error(await bob.delete(reaction_path(999999, "👍")), 404, "message_not_found")
    outsider = await (await alice.post("/send-message", json={"receiver_id": b["id"], "content": "dm"})).get_json()
    await assert_error(await carol.put(reaction_path(outsider["id"], "👍")), 404, "message_not_found")
    await alice.delete(f"/messages/{message['id']}")
    await assert_error(await bob.put(path), 409, "message_deleted")
    assert (await alice.delete(path)).status_code == 204


async def test_two_people_reacting_at_once_count_two(trio):
    (alice, a), (bob, b), _ = trio
    room = await channel(alice, b["id"])
    message = await send(alice, room)
    path = reaction_path(message["id"], "👍")
    responses = await asyncio.gather(alice.put(path), bob.put(path), alice.put(path), bob.put(path))
    assert {response.status_code for response in responses} == {204}
    assert (await history(alice, room))[-1]["reactions"][0]["count"] == 2


async def test_changes_do_not_count_as_unread_nor_show_in_history_or_search(trio):
    (alice, a), (bob, b), _ = trio
    room = await channel(alice, b["id"])
    message = await send(alice, room, "deployment tonight")
    before = next(r for r in (await (await bob.get("/rooms")).get_json())["rooms"] if r["room"] == room)
    await alice.patch(f"/messages/{message['id']}", json={"content": "deployment tomorrow"})
    await bob.put(reaction_path(message["id"], "👍"))
    after = next(r for r in (await (await bob.get("/rooms")).get_json())["rooms"] if r["room"] == room)
    assert (
        (after["unread"], after["last_message_id"])
        == (before["unread"], before["last_message_id"])
        == (1, message["id"])
    )
    assert [m["id"] for m in await history(bob, room)] == [message["id"]]
    found = await (await bob.get("/search", query_string={"q": "tomorrow"})).get_json()
    assert [m["id"] for m in found["messages"]] == [message["id"]]
    assert found["messages"][0]["reactions"][0]["emoji"] == "👍"
    assert (await (await bob.get("/search", query_string={"q": "tonight"})).get_json())["messages"] == []
    await alice.delete(f"/messages/{message['id']}")
    assert (await (await bob.get("/search", query_string={"q": "tomorrow"})).get_json())["messages"] == []


async def test_every_change_needs_a_session(client):
    for method, path in (
        ("patch", "/messages/1"),
        ("delete", "/messages/1"),
        ("put", "/messages/1/reactions/x"),
        ("delete", "/messages/1/reactions/x"),
    ):
        await assert_error(await getattr(client, method)(path, json={"content": "x"}), 401)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(emoji=st.text(min_size=1, max_size=40), body=st.one_of(st.none(), st.dictionaries(st.text(), st.text())))
async def test_bad_input_gets_a_json_answer_never_a_server_error(trio, emoji, body):
    (alice, a), _, _ = trio
    for response in (
        await alice.put(reaction_path(1, emoji)),
        await alice.delete(reaction_path(1, emoji)),
        await alice.patch("/messages/1", json=body),
    ):
        assert response.status_code < 500
        assert response.mimetype == "application/json"


@pytest.mark.parametrize(
    ("text", "single"),
    [("👍", True), ("👍🏽", True), ("👨‍👩‍👧", True), ("🇫🇷", True), ("1️⃣", True), ("❤️", True), ("©️", True)]
    + [("👍👍", False), ("a", False), ("🇫🇷🇫", False), ("👍‍", False), ("", False), ("🏽", False)],
)
def test_what_a_single_emoji_is(text, single):
    assert is_single_emoji(text) is single


async def test_changes_count_against_the_send_limit(trio):
    (alice, a), (bob, b), _ = trio
    room = await channel(alice, b["id"])
    message = await send(alice, room)
    path = reaction_path(message["id"], "👍")
    for attempt in range(150):
        response = await (alice.put(path) if attempt % 2 == 0 else alice.delete(path))
        if response.status_code == 429:
            break
        assert response.status_code == 204
    body = await assert_error(response, 429, "too_many_messages")
    assert response.headers["Retry-After"] and body["message"]
