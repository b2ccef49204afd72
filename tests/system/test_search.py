"""GET /search (issue 15) against real hypercorn processes: the contract's query forms, the same results on SQLite
and PostgreSQL for one corpus, permissions, paging, edits and deletes seen at once, the migration of messages
already stored, `chat reindex`, and no q that makes a 5xx."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import httpx
import hypothesis
import pytest
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st

from chat import search
from chat.models import Message
from chat.rooms import room_for
from chat.search import InvalidQuery, parse_query
from testkit import backends, probes
from testkit.backends import MIGRATIONS, PG_URL, REDIS_URL, backend_settings, psql
from testkit.http import signed_in_client
from testkit.migrations import schema_at
from testkit.servers import ROOT, Server

# ---------------------------------------------------------------- the query language (no database)


@pytest.mark.parametrize(
    ("q", "content", "matches"),
    [
        ("deplo", "the Deployment is done", [[4, 14]]),
        ("DEPLOY done", "the deployment is done", [[4, 14], [18, 22]]),
        ("de", "the deployment is de", [[18, 20]]),  # under 3 characters: the whole word only
        ('"is done"', "is it done? it is done", [[15, 22]]),
        ("cafe", "Un Café, s'il vous plaît", [[3, 7]]),
        ("plait", "Un Café, s'il vous plaît", [[19, 24]]),
        ("привет", "ПРИВЕТ, мир", [[0, 6]]),
        ("ελληνικά", "Τα ΕΛΛΗΝΙΚΆ", [[3, 11]]),
        ("タワー", "東京タワーに行った", [[2, 5]]),
        ("e-mail", "send an E-Mail now", [[8, 14]]),
        ("example", "https://staging.example.com/x", [[16, 23]]),
        ("😀 staging", "😀 staging", [[2, 9]]),
    ],
)
def test_a_query_matches_words_and_says_where(q, content, matches):
    assert parse_query(q).spans(content) == matches


@pytest.mark.parametrize(
    ("q", "content"),
    [
        ("deplo done", "the deployment is over"),  # every word must match
        ("de", "the deployment"),  # a 2-letter word is no prefix
        ('"done is"', "is done"),  # a phrase in its order
        ('"deploy"', "deployment"),  # a quoted word is that word
        ("ployment", "deployment"),  # prefixes, not any part of a word
    ],
)
def test_a_query_does_not_match(q, content):
    assert parse_query(q).spans(content) is None


@pytest.mark.parametrize("q", ["", "***", '""', " - ", "x" * 201, "a\x00b", "\ud800abc"])
def test_what_is_no_query_is_refused(q):
    with pytest.raises(InvalidQuery):
        parse_query(q)


# ---------------------------------------------------------------- one corpus, both databases

CORPUS = [
    "Where did we put the staging password?",
    "The staging password is in the vault.",
    "Deployment of the new release starts at noon",
    "deploy-2 failed: see https://ci.example.com/build/42",
    "Un café? Le déploiement est terminé.",
    "Привет! Пароль от staging в хранилище.",
    "Τα ελληνικά είναι δύσκολα",
    "東京タワーに行った、すごい",
    "is it done? it is done",
    "DONE and dusted",
    "e-mail me the password",
    "don't deploy on fridays",
]
# query -> the indexes of CORPUS that it finds, newest (highest) first
EXPECTED = {
    "staging password": [1, 0],
    "STAGING": [5, 1, 0],
    "deplo": [11, 4, 3, 2],
    "deploy": [11, 3, 2],
    '"deploy"': [11, 3],
    "de": [],
    '"is done"': [8],
    '"done is"': [],
    "done": [9, 8],
    "cafe": [4],
    "deploiement termine": [4],
    "пароль": [5],
    "ХРАНИЛИЩЕ": [5],
    "ελληνικά": [6],
    "タワー": [7],
    "東京": [7],
    "すごい 東京": [7],
    "example": [3],
    "e-mail": [10],
    "don't": [11],
    "password AND(": [],
    'password "e mail"': [10],
    "pass*": [10, 1, 0],
    "-staging": [5, 1, 0],
}


def pg_server_env(workdir: Path) -> dict[str, str]:
    """A fresh PostgreSQL database (dropped when the test ends) and Redis, whatever the configuration under test."""
    tag = "chat_test_" + hashlib.sha1(str(workdir).encode()).hexdigest()[:12]
    psql(f"DROP DATABASE IF EXISTS {tag} WITH (FORCE)")
    psql(f"CREATE DATABASE {tag}")
    backends._created_databases[tag] = workdir
    return {"CHAT_DATABASE_URL": f"{PG_URL}/{tag}", "CHAT_BROKER_URL": REDIS_URL, "CHAT_REDIS_PREFIX": f"{tag}:"}


def sqlite_server_env(workdir: Path) -> dict[str, str]:
    return {"CHAT_DATABASE_URL": f"sqlite://{workdir / 'instance' / 'chat.sqlite3'}", "CHAT_BROKER_URL": "memory://"}


def corpus_results(server: Server) -> dict[str, list[int]]:
    alice, _ = signed_in_client(server.base_url, "alice")
    _, bob = signed_in_client(server.base_url, "bob")
    ids = []
    for content in CORPUS:
        sent = alice.post("/send-message", json={"receiver_id": bob["id"], "content": content})
        assert sent.status_code == 201, sent.text
        ids.append(sent.json()["id"])
    results = {}
    for q in EXPECTED:
        answer = alice.get("/search", params={"q": q})
        assert answer.status_code == 200, (q, answer.text)
        found = answer.json()["messages"]
        results[q] = [ids.index(message["id"]) for message in found]
        for message in found:
            assert all(0 <= start < end <= len(message["content"]) for start, end in message["matches"]), message
    alice.close()
    return results


def test_both_databases_give_the_same_results_for_one_corpus(tmp_path):
    results = {}
    for name, env in (("sqlite", sqlite_server_env), ("postgres", pg_server_env)):
        workdir = tmp_path / name
        workdir.mkdir()
        server = Server(workdir=workdir, env=env(workdir)).start()
        try:
            results[name] = corpus_results(server)
        finally:
            server.stop()
        assert not probes.app_tracebacks(server.log()), server.log()
    assert results["sqlite"] == EXPECTED
    assert results["postgres"] == EXPECTED


# ---------------------------------------------------------------- one server of the configuration under test


def run_sql(workdir: Path, sql: str) -> None:
    """Change the database of a running server from outside, as an edit or a delete would."""
    settings = backend_settings(workdir)
    if not settings:
        with contextlib.closing(sqlite3.connect(workdir / "instance" / "chat.sqlite3")) as connection:
            connection.execute(sql)
            connection.commit()
        return
    psql(sql, settings["CHAT_DATABASE_URL"].rsplit("/", 1)[1])


def found_ids(client: httpx.Client, **params) -> list[int]:
    answer = client.get("/search", params=params)
    assert answer.status_code == 200, answer.text
    return [message["id"] for message in answer.json()["messages"]]


def test_search_finds_only_the_callers_rooms_and_pages_newest_first(server, tmp_path):
    alice, alice_user = signed_in_client(server.base_url, "alice")
    bob, bob_user = signed_in_client(server.base_url, "bob")
    carol, carol_user = signed_in_client(server.base_url, "carol")
    to_bob = [
        alice.post("/send-message", json={"receiver_id": bob_user["id"], "content": f"release note {n}"})
        for n in range(7)
    ]
    to_carol = alice.post("/send-message", json={"receiver_id": carol_user["id"], "content": "release party"})
    bob_ids = [answer.json()["id"] for answer in to_bob]
    carol_id = to_carol.json()["id"]

    assert found_ids(alice, q="release") == [carol_id, *bob_ids[::-1]]
    assert found_ids(bob, q="release") == bob_ids[::-1]  # never the room of alice and carol
    assert found_ids(carol, q="RELEASE") == [carol_id]

    # one room, and pages: newest first, `before` the last id seen, has_more until the end
    room = room_for(alice_user["id"], bob_user["id"])
    seen, before = [], None
    while True:
        answer = bob.get(
            "/search", params={"q": "rele", "room": room, "limit": 3, **({"before": before} if before else {})}
        )
        body = answer.json()
        seen += [message["id"] for message in body["messages"]]
        assert len(body["messages"]) <= 3
        if not body["has_more"]:
            break
        before = body["messages"][-1]["id"]
    assert seen == bob_ids[::-1]
    first = bob.get("/search", params={"q": "release note", "limit": 1}).json()["messages"][0]
    assert first["content"] == "release note 6" and first["matches"] == [[0, 7], [8, 12]]

    # someone else's room, no such room, bad parameters
    assert carol.get("/search", params={"q": "release", "room": room}).json()["error"] == "forbidden"
    assert carol.get("/search", params={"q": "release", "room": "dm-9-x"}).json()["error"] == "room_not_found"
    for params in ({}, {"q": ""}, {"q": "x" * 201}, {"q": "***"}, {"q": "a", "limit": 51}, {"q": "a", "before": -1}):
        answer = alice.get("/search", params=params)
        assert answer.status_code == 400 and answer.json()["error"] == "validation_error", (params, answer.text)
    assert httpx.get(server.base_url + "/search", params={"q": "release"}).status_code == 401

    # an edit and a delete (UPDATE and DELETE on the messages table) are seen by the next search
    run_sql(tmp_path, f"UPDATE messages SET content = 'shipping schedule' WHERE id = {bob_ids[0]}")
    run_sql(tmp_path, f"DELETE FROM messages WHERE id = {bob_ids[1]}")
    assert found_ids(bob, q="release") == bob_ids[:1:-1]
    assert found_ids(bob, q="shipping") == [bob_ids[0]]
    for client in (alice, bob, carol):
        client.close()


async def test_the_migration_indexes_messages_already_stored(tmp_path):
    """From the schema before search, with messages in it, to the search migration: they are found."""
    async with schema_at(tmp_path, "0003_account_lifecycle") as schema:
        alice = SimpleNamespace(id=await schema.add_user("alice"))
        bob = SimpleNamespace(id=await schema.add_user("bob"))
        mark = schema.mark
        for text in ("Le déploiement d'hier", "nothing to see", "Deploy again tomorrow"):
            await schema.execute(
                "INSERT INTO messages (sender_id, receiver_id, room, content, timestamp, mentions)"
                f" VALUES ({mark}1, {mark}2, 'dm-1-2', {mark}3, {mark}4, '')",
                [alice.id, bob.id, text, datetime.now(UTC)],
            )
        old = [SimpleNamespace(**row) for row in await schema.query("SELECT id FROM messages ORDER BY id")]
        assert await schema.migrate_the_rest() == MIGRATIONS
        messages, has_more = await search.search(bob.id, parse_query("deplo"))
        assert [message["id"] for message in messages] == [old[2].id, old[0].id] and not has_more
        assert messages[1]["content"] == "Le déploiement d'hier"  # the data is kept as it was
        new = await Message.create(sender_id=bob.id, receiver_id=alice.id, room="dm-1-2", content="deployed")
        messages, _ = await search.search(alice.id, parse_query("deplo"))
        assert [message["id"] for message in messages] == [new.id, old[2].id, old[0].id]
        assert await search.reindex() == 4
        messages, _ = await search.search(alice.id, parse_query('"deploy"'))
        assert [message["id"] for message in messages] == [old[2].id]


def test_chat_reindex_rebuilds_the_index(server, tmp_path):
    alice, _ = signed_in_client(server.base_url, "alice")
    _, bob = signed_in_client(server.base_url, "bob")
    sent = alice.post("/send-message", json={"receiver_id": bob["id"], "content": "rebuild me"}).json()
    if backends.BACKEND != "postgres":  # lose the index (a damaged or older FTS5 table), then rebuild it
        run_sql(tmp_path, "INSERT INTO messages_fts(messages_fts) VALUES ('delete-all')")
        assert found_ids(alice, q="rebuild") == []
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    env.update(server.full_env())
    done = subprocess.run(
        [sys.executable, "-m", "chat.cli", "reindex"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "search index rebuilt: 1 messages" in done.stdout
    assert found_ids(alice, q="rebuild") == [sent["id"]]
    alice.close()


# ---------------------------------------------------------------- no q makes a 5xx

HYPOTHESIS = hypothesis.settings(
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    max_examples=200,
)
PIECES = st.sampled_from(
    [
        '"',
        "AND(",
        "OR",
        "NOT",
        "*",
        "-",
        "\x00",
        "\ud800",
        ":",
        "^",
        "'",
        "\\",
        "(",
        ")",
        "x" * 200,
        "deploy",
        "東京",
        "é",
        " ",
        "NEAR(",
        "{",
        "}",
        "+",
        "$1",
        ";--",
    ]
)
QUERIES = st.one_of(st.lists(PIECES, min_size=1, max_size=8).map("".join), st.text(min_size=0, max_size=220))


def test_no_q_makes_a_server_error(server):
    alice, _ = signed_in_client(server.base_url, "alice")
    _, bob = signed_in_client(server.base_url, "bob")
    alice.post("/send-message", json={"receiver_id": bob["id"], "content": 'deploy "x" AND( 東京 é * -1'})

    @HYPOTHESIS
    @hypothesis.given(QUERIES)
    def check(q: str) -> None:
        # percent-encoded by hand: a lone surrogate has no UTF-8, so it goes as the bytes Python would write
        url = "/search?q=" + quote(q.encode("utf-8", "surrogatepass"), safe="")
        answer = alice.get(url)
        assert answer.status_code in (200, 400), (q, answer.status_code, answer.text)
        body = answer.json()
        if answer.status_code == 400:
            assert body["error"] == "validation_error", body
        else:
            assert isinstance(body["messages"], list) and isinstance(body["has_more"], bool)

    check()
    alice.close()
    server.stop()
    assert not probes.app_tracebacks(server.log()), server.log()
    assert "ERROR" not in server.log() and "Traceback" not in server.log(), server.log()


def test_a_channel_is_searched_by_its_members_only_and_not_after_leaving(server):
    owner, _ = signed_in_client(server.base_url, "chowner")
    member, member_user = signed_in_client(server.base_url, "chmember")
    outsider, _ = signed_in_client(server.base_url, "choutsider")
    room = owner.post("/rooms", json={"name": "deploys", "member_ids": [member_user["id"]]}).json()["room"]
    sent = owner.post("/send-message", json={"room": room, "content": "staging deployment password rotated"})
    assert sent.status_code == 201
    message_id = sent.json()["id"]

    assert found_ids(owner, q="staging deplo") == [message_id]
    assert found_ids(member, q="staging deplo") == [message_id]  # a member sees the channel's whole history
    assert found_ids(member, q="rotated", room=room) == [message_id]
    assert found_ids(outsider, q="staging") == []  # a public channel they did not join
    assert outsider.get("/search", params={"q": "staging", "room": room}).json()["error"] == "forbidden"

    assert member.post(f"/rooms/{room}/leave").status_code == 204
    assert found_ids(member, q="staging") == []  # a channel left is no longer searched
    assert member.get("/search", params={"q": "staging", "room": room}).json()["error"] == "forbidden"
    for client in (owner, member, outsider):
        client.close()
