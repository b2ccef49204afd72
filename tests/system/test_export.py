"""GET /me/export, `chat export` and `chat import`: the export → import round trip gives identical API answers, on
the configuration under test (SQLite, or PostgreSQL + Redis)."""

from __future__ import annotations

import json

import httpx

from chat.models import Message, User
from chat.rooms import room_for
from testkit.app import assert_error
from testkit.http import PASSWORD, login, register
from testkit.servers import Server

from .test_admin_cli import chat

NAMES = ("alice", "bob", "carol", "dave")


def api_answers(server: Server, names: list[str]) -> dict:
    """What each of these people sees through the API: /me, the people list and every conversation."""
    answers = {}
    for name in names:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            login(client, name)
            people = client.get("/get-users").json()["users"]
            conversations = {
                other["id"]: client.get("/get-messages", params={"user_id": other["id"], "limit": 200}).json()
                for other in people
            }
            rooms = client.get("/rooms").json()["rooms"]
            for room in rooms:
                conversations[room["room"]] = {
                    "channel": client.get(f"/rooms/{room['room']}").json(),
                    "history": client.get("/get-messages", params={"room": room["room"], "limit": 200}).json(),
                }
            answers[name] = {
                "me": client.get("/me").json(),
                "people": people,
                "rooms": rooms,
                "conversations": conversations,
            }
    return answers


def populate(server: Server) -> None:
    """Four people who talk and read; carol is deactivated by root, dave deletes his account."""
    clients, users = {}, {}
    for name in NAMES:
        clients[name] = httpx.Client(base_url=server.base_url, timeout=10)
        register(clients[name], name)
        users[name] = login(clients[name], name)
    for number in range(12):
        sender, receiver = NAMES[number % 4], NAMES[(number + 1) % 4]
        body = {"receiver_id": users[receiver]["id"], "content": f"hello {number} ✓", "client_id": f"c{number}"}
        assert clients[sender].post("/send-message", json=body).status_code == 201
    # a private channel of three, where alice mentions bob, and a public one of alice's alone
    made = clients["alice"].post(
        "/rooms", json={"name": "team", "private": True, "member_ids": [users["bob"]["id"], users["carol"]["id"]]}
    )
    team = made.json()["room"]
    assert clients["alice"].post("/rooms", json={"name": "open", "topic": "anyone"}).status_code == 201
    for number, sender in enumerate(["alice", "bob", "carol", "alice"]):
        body = {"room": team, "content": f"in the team {number} @bob"}
        assert clients[sender].post("/send-message", json=body).status_code == 201
    # changes: an edit, a delete, a reply, reactions in the channel and in a direct conversation
    history = clients["alice"].get("/get-messages", params={"room": team}).json()["messages"]
    first, by_bob = history[0], history[1]
    assert clients["alice"].patch(f"/messages/{first['id']}", json={"content": "edited @bob"}).status_code == 200
    assert clients["bob"].delete(f"/messages/{by_bob['id']}").status_code == 204
    reply = {"room": team, "content": "a reply", "reply_to": first["id"]}
    assert clients["carol"].post("/send-message", json=reply).status_code == 201
    for name, emoji in (("bob", "👍"), ("carol", "🎉"), ("carol", "👍"), ("alice", "👍")):
        assert clients[name].put(f"/messages/{first['id']}/reactions/{emoji}").status_code == 204
    direct = clients["bob"].get("/get-messages", params={"user_id": users["alice"]["id"]}).json()["messages"][0]
    assert clients["bob"].put(f"/messages/{direct['id']}/reactions/❤️").status_code == 204
    assert clients["alice"].put(f"/messages/{direct['id']}/reactions/👎").status_code == 204
    assert clients["alice"].delete(f"/messages/{direct['id']}/reactions/👎").status_code == 204
    last = clients["bob"].get("/get-messages", params={"user_id": users["alice"]["id"]}).json()["messages"][-1]
    assert clients["bob"].post("/mark-read", json={"user_id": users["alice"]["id"], "up_to": last["id"]}).status_code
    root = httpx.Client(base_url=server.base_url, timeout=10)
    login(root, "root")
    assert root.post(f"/admin/users/{users['carol']['id']}/deactivate").status_code == 200
    assert clients["dave"].post("/delete-account", json={"password": PASSWORD}).status_code == 204


def test_export_then_import_into_an_empty_instance_gives_identical_answers(tmp_path):
    origin_dir, copy_dir = tmp_path / "origin", tmp_path / "copy"
    origin_dir.mkdir()
    copy_dir.mkdir()
    made = chat(origin_dir, "createuser", "--username", "root", "--email", "root@example.org", "--admin",
                "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
    assert made.returncode == 0, made.stderr
    origin = Server(workdir=origin_dir).start()
    export = tmp_path / "instance.json"
    try:
        populate(origin)
        before = api_answers(origin, ["root", "alice", "bob"])
        exported = chat(origin_dir, "export", str(export))  # while the server runs
        assert exported.returncode == 0, exported.stderr
    finally:
        origin.stop()
    assert "Traceback" not in origin.log(), origin.log()
    document = json.loads(export.read_text())
    assert (document["format"], document["version"], document["scope"]) == ("chat-export", 1, "instance")
    assert oct(export.stat().st_mode & 0o777) == "0o600"  # it holds password hashes
    # the messages as they are now: no change-event rows, the changes shown on the messages they changed
    messages = document["messages"]
    assert len(messages) == 17  # 12 direct, 5 in the team: the 2 changes and 7 reaction events are not rows here
    edited, deleted, reply = (next(m for m in messages if test(m)) for test in (
        lambda m: m["edited_at"], lambda m: m["deleted"], lambda m: m["reply_to"]))  # fmt: skip
    assert (edited["content"], deleted["content"], reply["reply_to"]) == ("edited @bob", "", edited["id"])
    ids = {name: user["id"] for name, user in ((u["username"], u) for u in document["users"])}
    assert edited["reactions"] == [
        {"emoji": "👍", "count": 3, "user_ids": [ids["bob"], ids["carol"], ids["alice"]]},
        {"emoji": "🎉", "count": 1, "user_ids": [ids["carol"]]},
    ]
    assert [m["reactions"] for m in messages if m["room"] == edited["room"] and m is not edited] == [[], [], [], []]
    assert [m["reactions"] for m in messages if m["receiver_id"]][0] == [
        {"emoji": "❤️", "count": 1, "user_ids": [ids["bob"]]}
    ]

    imported = chat(copy_dir, "import", str(export))
    assert imported.returncode == 0, imported.stderr
    assert "imported 5 users, 2 channels, 4 memberships, 17 messages, 1 read markers, 5 reactions" in imported.stdout
    copy = Server(workdir=copy_dir).start()
    try:
        assert api_answers(copy, ["root", "alice", "bob"]) == before
        # carol stays deactivated, dave's name stays free, and new rows continue after the imported ids
        with httpx.Client(base_url=copy.base_url, timeout=10) as client:
            refused = client.post("/login", json={"username": "carol", "password": PASSWORD})
            assert refused.status_code == 403
            newcomer = register(client, "dave")
            assert newcomer["id"] == 6
            login(client, "dave")
            sent = client.post("/send-message", json={"receiver_id": 2, "content": "after the import"})
            assert sent.status_code == 201 and sent.json()["id"] == messages[-1]["id"] + 1
        again = chat(copy_dir, "import", str(export))
        assert again.returncode == 2 and "accounts already" in again.stderr
    finally:
        copy.stop()
    assert "Traceback" not in copy.log(), copy.log()


def test_import_refuses_what_it_cannot_read(tmp_path):
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert chat(tmp_path, "import", str(garbage)).returncode == 2
    for document, reason in (
        ({"format": "other"}, "not a chat export"),
        ({"format": "chat-export", "version": 99}, "version 99"),
        ({"format": "chat-export", "version": 1, "scope": "user", "users": [], "messages": []}, "one-user export"),
        (
            {"format": "chat-export", "version": 1, "scope": "instance", "users": [{"id": 1}], "messages": [],
             "read_markers": [], "channels": [], "memberships": []},
            "password hashes",
        ),
    ):  # fmt: skip
        garbage.write_text(json.dumps(document))
        refused = chat(tmp_path, "import", str(garbage))
        assert refused.returncode == 2 and reason in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr


async def test_my_export_is_my_account_and_my_messages_streamed(signup, make_client):
    alice, a = await signup("alice")
    bob, b = await signup("bob")
    carol, c = await signup("carol")
    room = room_for(a["id"], b["id"])
    await Message.bulk_create(  # more than one batch of the stream
        Message(sender_id=s, receiver_id=r, room=room, content=f"m{number}")
        for number, (s, r) in enumerate([(a["id"], b["id"]), (b["id"], a["id"])] * 550)
    )
    await bob.post("/send-message", json={"receiver_id": c["id"], "content": "not alice's business"})
    response = await alice.get("/me/export")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Content-Disposition"] == 'attachment; filename="chat-export-alice.json"'
    document = json.loads(await response.get_data())
    assert document["scope"] == "user"
    [account] = document["users"]
    assert account["id"] == a["id"] and "password_hash" not in account and account["role"] == "member"
    contents = [message["content"] for message in document["messages"]]
    assert len(contents) == 1100 and "not alice's business" not in contents
    assert [m["id"] for m in document["messages"]] == sorted(m["id"] for m in document["messages"])
    await assert_error(await make_client().get("/me/export"), 401, "unauthorized")
    assert await User.filter(id=a["id"]).exists()
