"""Edits, deletes, reactions and replies over real hypercorn and real websockets (two workers on PostgreSQL + Redis in
that configuration): every change is an event of the room's sequence, received by every socket once and in id
order, and replayed with ?after, changes to old messages included (API.md "Changing messages")."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import pytest

from testkit.ws import new_person, recv_until

from .test_channels_websocket import burst_server, make_channel

__all__ = ["burst_server"]  # the fixture: two workers on PostgreSQL + Redis, past the send limit and frame burst

SEQUENCED = {"message", "edit", "delete", "reaction"}
EMOJI = ("👍", "🎉", "❤️")


def sequence_id(frame: dict) -> int:
    return frame["message"]["id"] if frame["type"] == "message" else frame["id"]


async def read_until(ws, done, frames: list[dict], timeout: float = 120) -> list[dict]:
    """Every sequenced frame until done(frames) holds (appended to frames)."""
    async with asyncio.timeout(timeout):
        while not frames or not done(frames):
            frame = json.loads(await ws.recv())
            if frame["type"] in SEQUENCED:
                frames.append(frame)
    return frames


def up_to(last_id: int):
    return lambda frames: sequence_id(frames[-1]) >= last_id


def the_end(frames: list[dict]) -> bool:
    return frames[-1]["type"] == "message" and frames[-1]["message"]["content"] == "the end"


def replay(frames: list[dict]) -> dict[int, dict]:
    """The room's messages as a client that applies the frames in order would show them (docs/websocket.md): a
    message or an edit replaces the message; a reaction says whether that person now has that emoji on it, so
    applying one that a replayed message already shows changes nothing."""
    messages: dict[int, dict] = {}
    for frame in frames:
        if frame["type"] in ("message", "edit"):
            messages[frame["message"]["id"]] = frame["message"]
        elif frame["type"] == "delete":
            messages[frame["message_id"]].update(deleted=True, content="", mentions=[], reactions=[])
        else:
            reactions = messages[frame["message_id"]]["reactions"]
            entry = next((r for r in reactions if r["emoji"] == frame["emoji"]), None)
            if frame["added"]:
                if entry is None:
                    reactions.append(entry := {"emoji": frame["emoji"], "count": 0, "user_ids": []})
                if frame["user_id"] not in entry["user_ids"]:
                    entry["count"] += 1
                    entry["user_ids"].append(frame["user_id"])
            elif entry is not None and frame["user_id"] in entry["user_ids"]:
                entry["count"] -= 1
                entry["user_ids"].remove(frame["user_id"])
                if not entry["count"]:
                    reactions.remove(entry)
    return messages


def history(person, room: str) -> list[dict]:
    messages: list[dict] = []
    while True:
        params = {"room": room, "after": messages[-1]["id"] if messages else 0, "limit": 200}
        page = person.http.get("/get-messages", params=params).json()
        messages += page["messages"]
        if not page["has_more"]:
            return messages


async def test_a_burst_of_messages_edits_deletes_and_reactions_reaches_every_socket_once_in_order(burst_server):
    people = [new_person(burst_server) for _ in range(3)]
    alice = people[0]
    room = make_channel(alice, people[1:])
    clients = [person.async_http() for person in people]
    sockets = [await person.connect(room, after=0, max_size=2**22).__aenter__() for person in people for _ in (0, 1)]
    late = await people[1].connect(room, after=0, max_size=2**22).__aenter__()  # leaves mid-way, resumes
    try:

        async def send(n: int, text: str) -> dict:
            response = await clients[n].post("/send-message", json={"room": room, "content": text})
            assert response.status_code == 201, response.text
            return response.json()

        # every socket reads all along (one that stops reading is closed with 1013, as it should be)
        readers = [asyncio.create_task(read_until(ws, the_end, [])) for ws in sockets]
        # phase 1: 100 messages from three people at once
        first = await asyncio.gather(*(send(n % 3, f"first {n}") for n in range(100)))
        late_frames = await read_until(late, up_to(max(m["id"] for m in first)), [])
        await late.close()
        own = {n: [m for m in first if m["sender_id"] == people[n].id] for n in range(3)}

        async def edit(n: int, message: dict, round_: int) -> int:
            response = await clients[n].patch(f"/messages/{message['id']}", json={"content": f"edit {round_}"})
            assert response.status_code in (200, 409), response.text  # 409: deleted meanwhile
            return int(response.status_code == 200)

        async def delete(n: int, message: dict) -> int:
            response = await clients[n].delete(f"/messages/{message['id']}")
            assert response.status_code == 204, response.text
            return 1

        async def react(n: int, message: dict) -> int:
            emoji = quote(EMOJI[n])
            response = await clients[n].put(f"/messages/{message['id']}/reactions/{emoji}")
            assert response.status_code in (204, 409), response.text
            return int(response.status_code == 204)

        # phase 2, all at once: 100 more messages, 200 edits, 200 reactions, 15 deletes, replies
        work = [send(n % 3, f"second {n}") for n in range(100)]
        work += [edit(n, message, r) for n in range(3) for message in own[n] for r in (1, 2)]
        work += [react(n, message) for n in range(3) for other in range(3) if other != n for message in own[other]]
        work += [delete(n, message) for n in range(3) for message in own[n][:5]]
        results = await asyncio.gather(*work)
        events = sum(result for result in results if isinstance(result, int))
        last = await send(0, "the end")

        assert last["content"] == "the end"
        expected = 100 + 100 + 1 + events
        for frames in await asyncio.gather(*readers):
            ids = [sequence_id(frame) for frame in frames]
            assert ids == sorted(set(ids)), "each event once, in id order"
            assert len(frames) == expected
            assert list(replay(frames).values()) == history(alice, room)
        # the socket that left after phase 1 resumes: the changes to its old messages come too, once, in order
        async with people[1].connect(room, after=sequence_id(late_frames[-1]), max_size=2**22) as resumed:
            await read_until(resumed, up_to(last["id"]), late_frames)
        ids = [sequence_id(frame) for frame in late_frames]
        assert ids == sorted(set(ids)) and len(late_frames) == expected
        assert list(replay(late_frames).values()) == history(people[1], room)
    finally:
        for ws in sockets:
            await ws.close()
        for client in clients:
            await client.aclose()


async def test_a_socket_that_missed_an_edit_and_a_delete_of_old_messages_gets_both_once(burst_server):
    alice, bob = new_person(burst_server), new_person(burst_server)
    room = make_channel(alice, [bob])
    ids = [alice.http.post("/send-message", json={"room": room, "content": f"m{n}"}).json()["id"] for n in range(3)]
    async with bob.connect(room, after=0) as ws:
        frames = await read_until(ws, up_to(ids[-1]), [])
    newest = sequence_id(frames[-1])
    assert alice.http.patch(f"/messages/{ids[0]}", json={"content": "fixed"}).status_code == 200
    assert alice.http.delete(f"/messages/{ids[1]}").status_code == 204
    assert bob.http.put(f"/messages/{ids[2]}/reactions/{quote('👍')}").status_code == 204
    # unread unchanged by the changes: bob read nothing, three messages are unread
    assert next(r for r in bob.http.get("/rooms").json()["rooms"] if r["room"] == room)["unread"] == 3
    async with bob.connect(room, after=newest) as ws:
        got = [await recv_until(ws, lambda f: f["type"] in SEQUENCED) for _ in range(3)]
        assert [f["type"] for f in got] == ["edit", "delete", "reaction"]
        assert got[0]["message"]["content"] == "fixed" and got[0]["message"]["edited_at"]
        assert got[1]["message_id"] == ids[1]
        assert got[2] == {
            "type": "reaction",
            "id": got[2]["id"],
            "message_id": ids[2],
            "emoji": "👍",
            "user_id": bob.id,
            "added": True,
        }
        assert got[0]["id"] < got[1]["id"] < got[2]["id"]
        with pytest.raises(AssertionError, match="no matching frame"):  # nothing twice
            await recv_until(ws, lambda f: f["type"] in SEQUENCED, timeout=1)


async def test_the_same_changes_over_the_websocket(burst_server):
    alice, bob = new_person(burst_server), new_person(burst_server)
    room = make_channel(alice, [bob])
    async with alice.connect(room) as mine, bob.connect(room) as theirs:
        await mine.send(json.dumps({"type": "message", "content": "helo", "client_id": "a1"}))
        sent = (await recv_until(mine, lambda f: f["type"] == "message"))["message"]
        await theirs.send(json.dumps({"type": "message", "content": "hi!", "reply_to": sent["id"]}))
        reply = (await recv_until(mine, lambda f: f["type"] == "message"))["message"]
        assert reply["reply_to"] == sent["id"]
        await mine.send(json.dumps({"type": "edit", "message_id": sent["id"], "content": "hello"}))
        await theirs.send(json.dumps({"type": "react", "message_id": sent["id"], "emoji": "🎉", "on": True}))
        await theirs.send(json.dumps({"type": "delete", "message_id": sent["id"]}))  # neither bob's nor his channel
        error = await recv_until(theirs, lambda f: f["type"] == "error")
        assert error["error"] == "forbidden"
        await mine.send(json.dumps({"type": "delete", "message_id": reply["id"]}))  # the channel's owner may
        seen: list[dict] = []
        await recv_until(mine, lambda f: f["type"] == "delete", seen=seen)
        kinds = [f["type"] for f in seen if f["type"] in SEQUENCED]
        assert sorted(kinds) == ["delete", "edit", "reaction"]
        for frame in (
            {"type": "react", "message_id": sent["id"], "emoji": "ab", "on": True},
            {"type": "react", "message_id": sent["id"], "emoji": "👍", "on": "yes"},
            {"type": "edit", "message_id": 0, "content": "x"},
            {"type": "edit", "message_id": sent["id"], "content": ""},
            {"type": "delete"},
        ):
            await theirs.send(json.dumps(frame))
            error = await recv_until(theirs, lambda f: f["type"] == "error")
            assert error["error"] == "validation_error", (frame, error)
        await theirs.send(json.dumps({"type": "edit", "message_id": sent["id"], "content": "x"}))
        assert (await recv_until(theirs, lambda f: f["type"] == "error"))["error"] == "forbidden"
        await theirs.send(json.dumps({"type": "react", "message_id": reply["id"], "emoji": "👍", "on": True}))
        assert (await recv_until(theirs, lambda f: f["type"] == "error"))["error"] == "message_deleted"
