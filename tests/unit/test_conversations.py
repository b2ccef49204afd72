"""The send path (conversations.py) under concurrency: batched inserts, idempotency, 404s, store-then-publish in id
order, the per-user send limit, and the JSON responses."""

from __future__ import annotations

import asyncio
import json

import pytest

from chat import conversations
from chat.conversations import MessageWriter
from chat.models import Message, User
from chat.rooms import Room
from chat.state import state
from testkit.app import api_login, api_register, started_app
from testkit.backends import BACKEND


async def _people(make_client, names):
    people = []
    for name in names:
        person = make_client()
        await api_register(person, name)
        people.append((person, await api_login(person, name)))
    return people


def _count_batches(app) -> list[int]:
    """Record the size of every INSERT the app's message writer makes."""
    app_state = app.extensions["chat"]
    writer = app_state.message_writer = MessageWriter(app_state.broker, app_state.settings.is_postgres)
    sizes: list[int] = []
    insert = writer._insert

    async def counting(batch):
        sizes.append(len(batch))
        return await insert(batch)

    writer._insert = counting
    return sizes


async def test_concurrent_sends_are_each_stored_once_and_published_in_id_order(app, make_client):
    (alice, a), (bob, b), (carol, c) = await _people(make_client, ["alice", "bob", "carol"])
    batches = _count_batches(app)
    room = f"dm-{min(a['id'], b['id'])}-{max(a['id'], b['id'])}"
    async with bob.websocket(f"/ws/rooms/{room}") as ws:
        frames = [json.loads(await ws.receive())]  # the presence frame: the socket is subscribed
        sends = [alice.post("/send-message", json={"receiver_id": b["id"], "content": f"a{i}"}) for i in range(30)]
        sends += [carol.post("/send-message", json={"receiver_id": a["id"], "content": f"c{i}"}) for i in range(10)]
        responses = await asyncio.gather(*sends)
        assert [r.status_code for r in responses] == [201] * 40
        sent = [await r.get_json() for r in responses]
        in_room = sorted(m["id"] for m in sent if m["room"] == room)
        while len([f for f in frames if f["type"] == "message"]) < len(in_room):
            frames.append(json.loads(await asyncio.wait_for(ws.receive(), 5)))
    published = [f["message"]["id"] for f in frames if f["type"] == "message"]
    assert published == in_room  # every message of the room, once, in id order
    assert len({m["id"] for m in sent}) == 40
    assert await Message.all().count() == 40
    stored = {m.id: m.public() for m in await Message.all()}
    assert all(stored[m["id"]] == m for m in sent)  # the answer is what was stored
    assert sum(batches) == 40 and max(batches) > 1  # concurrent sends shared INSERTs


async def test_the_same_client_id_in_one_batch_is_stored_once(app, make_client):
    (alice, _), (_, b) = await _people(make_client, ["alice", "bob"])
    body = {"receiver_id": b["id"], "content": "once", "client_id": "same-key"}
    responses = await asyncio.gather(*(alice.post("/send-message", json=body) for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201]
    assert len({(await r.get_json())["id"] for r in responses}) == 1
    assert await Message.filter(client_id="same-key").count() == 1


async def test_a_receiver_deleted_meanwhile_is_404_for_its_sender_only(app, make_client):
    (alice, _), (_, b), (_, c) = await _people(make_client, ["alice", "bob", "carol"])
    # both receivers are known to the writer after a first send each
    for receiver in (b, c):
        first = await alice.post("/send-message", json={"receiver_id": receiver["id"], "content": "hi"})
        assert first.status_code == 201
    await User.filter(id=c["id"]).delete()
    sends = [alice.post("/send-message", json={"receiver_id": r["id"], "content": "again"}) for r in (b, c, b)]
    responses = await asyncio.gather(*sends)
    assert [r.status_code for r in responses] == [201, 404, 201]
    assert (await responses[1].get_json())["error"] == "user_not_found"


async def test_an_unknown_receiver_is_404(client, signup):
    alice, _ = await signup("alice")
    response = await alice.post("/send-message", json={"receiver_id": 999_999, "content": "hello?"})
    assert response.status_code == 404
    assert (await response.get_json())["error"] == "user_not_found"


async def test_json_answers_keep_their_status_headers_and_shape(client, signup):
    alice, a = await signup("alice")
    me = await alice.get("/me")
    assert me.status_code == 200 and me.mimetype == "application/json"
    assert me.headers["Cache-Control"] == "no-store"
    assert await me.get_json() == {
        "id": a["id"],
        "username": "alice",
        "email": "alice@example.org",
        "role": "member",
        "deactivated": False,
    }
    sent = await alice.post("/send-message", json={"receiver_id": a["id"], "content": "ünïcode ✓"})
    assert "ünïcode ✓".encode() in await sent.get_data()  # orjson writes UTF-8, the stdlib's json \u-escapes
    spec = await client.get("/openapi.json")
    assert spec.status_code == 200 and "/send-message" in (await spec.get_json())["paths"]


async def test_history_pages_are_what_the_orm_reads(app, make_client):
    (alice, a), (bob, b) = await _people(make_client, ["alice", "bob"])
    for i in range(7):
        sender, receiver = (alice, b) if i % 2 else (bob, a)
        body = {"receiver_id": receiver["id"], "content": f"m{i}", "client_id": f"k{i}" if i % 3 else None}
        assert (await sender.post("/send-message", json=body)).status_code == 201
    stored = [m.public() for m in await Message.all().order_by("id")]
    ids = [m["id"] for m in stored]

    async def page(**params):
        response = await alice.get("/get-messages", query_string={"user_id": b["id"], **params})
        assert response.status_code == 200
        return await response.get_json()

    assert await page() == {"messages": stored, "has_more": False}
    assert await page(limit=3) == {"messages": stored[-3:], "has_more": True}
    assert await page(before=ids[3], limit=2) == {"messages": stored[1:3], "has_more": True}
    assert await page(after=ids[3], limit=2) == {"messages": stored[4:6], "has_more": True}
    assert await page(after=ids[-1]) == {"messages": [], "has_more": False}
    unknown = await alice.get("/get-messages", query_string={"user_id": 999_999})
    assert unknown.status_code == 404


async def test_concurrent_sends_are_published_in_id_order(app, signup):
    _, alice = await signup("alice")
    _, bob = await signup("bob")
    room = Room.direct(alice["id"], bob["id"])
    async with app.app_context():
        subscription = await state().broker.subscribe((room.channel,), 100)
        sends = [
            conversations.send_message(
                *((alice["id"], bob["id"]) if n % 2 else (bob["id"], alice["id"])), f"m{n}", None
            )
            for n in range(40)
        ]
        await asyncio.gather(*sends)
        # through Redis the events come back by the broker's reader, a moment after each send has returned
        published = [(await asyncio.wait_for(subscription.queue.get(), 10)).message_id for _ in range(40)]
        stored = await Message.filter(room=room.name).order_by("id").values_list("id", flat=True)
    assert published == list(stored)


@pytest.mark.skipif(BACKEND != "postgres", reason="the Redis of the PostgreSQL + Redis pass")
async def test_a_send_while_every_redis_connection_is_busy_waits_its_turn_and_is_published(tmp_path, caplog):
    """A burst of calls can hold every connection of the worker's Redis pool (sends check their limit there): a
    send then waits for a connection rather than failing, and its message is published. redis-py's default pool
    raised "Too many connections" instead, and a publish that failed so left the sockets without the message."""
    async with started_app(tmp_path, redis_pool_size=4) as small_pool:
        alice, bob = small_pool.test_client(), small_pool.test_client()
        a, b = await api_register(alice, "alice"), await api_register(bob, "bob")
        room = Room.direct(a["id"], b["id"])
        async with small_pool.app_context():
            subscription = await state().broker.subscribe((room.channel,), 10)
            client, pool = state().redis, state().redis.connection_pool
            free = pool.max_connections - len(pool._in_use_connections)
            held = [asyncio.create_task(client.blpop([f"nothing-{n}"], timeout=0.5)) for n in range(free)]
            await asyncio.sleep(0.1)  # every connection of the pool is now waiting in BLPOP
            message, created = await conversations.send_message(a["id"], b["id"], "in turn", "c-turn")
            event = await asyncio.wait_for(subscription.queue.get(), 5)
            await asyncio.gather(*held)
    assert created and event.message_id == message["id"]
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR") and r.name.startswith("chat")]


@pytest.mark.skipif(BACKEND != "postgres", reason="PostgreSQL's advisory locks")
async def test_one_statement_takes_the_batch_rooms_locks_until_the_commit(app):
    """The writer locks every room of a batch at once (_LOCK_ROOMS_IN_ORDER); another writer cannot take any."""
    import asyncpg
    from tortoise.transactions import in_transaction

    keys = sorted(conversations._room_lock_key(Room.direct(1, other)) for other in (2, 3, 4))
    try_lock = "SELECT pg_try_advisory_xact_lock(key) FROM unnest($1::bigint[]) AS key"
    async with app.app_context():
        other = await asyncpg.connect(state().settings.resolved_database_url)
        try:
            async with in_transaction() as connection:
                await connection.execute_query(conversations._LOCK_ROOMS_IN_ORDER, [keys])
                async with other.transaction():
                    assert [row[0] for row in await other.fetch(try_lock, keys)] == [False, False, False]
            async with other.transaction():
                assert [row[0] for row in await other.fetch(try_lock, keys)] == [True, True, True]
        finally:
            await other.close()


@pytest.mark.skipif(BACKEND != "postgres", reason="PostgreSQL's advisory locks")
async def test_a_batch_in_one_statement_draws_no_id_before_it_holds_its_rooms_locks(app, signup):
    """_INSERT_LOCKED: while another writer holds a room's lock, a message to that room waits without drawing an
    id from the sequence (an id drawn early could be committed after a later one), then is stored once."""
    import asyncpg

    _, alice = await signup("alice")
    _, bob = await signup("bob")
    key = conversations._room_lock_key(Room.direct(alice["id"], bob["id"]))
    sequence = "SELECT last_value, is_called FROM messages_id_seq"
    async with app.app_context():
        other = await asyncpg.connect(state().settings.resolved_database_url)
        try:
            await other.execute("SELECT pg_advisory_lock($1)", key)  # another writer in the middle of its commit
            drawn = tuple(await other.fetchrow(sequence))
            send = asyncio.create_task(conversations.send_message(alice["id"], bob["id"], "after you", "c-wait"))
            await asyncio.sleep(0.3)
            assert not send.done() and tuple(await other.fetchrow(sequence)) == drawn
            await other.execute("SELECT pg_advisory_unlock($1)", key)
            message, created = await asyncio.wait_for(send, 5)
        finally:
            await other.close()
        first_free = drawn[0] + 1 if drawn[1] else drawn[0]  # the sequence's next id when the lock was taken
        assert created and message["id"] == first_free and await Message.filter(client_id="c-wait").count() == 1


async def test_a_send_cancelled_mid_insert_is_still_published(app, signup, monkeypatch):
    """A client that hangs up cancels its handler: a message stored by then must reach the room anyway."""
    _, alice = await signup("alice")
    _, bob = await signup("bob")
    room = Room.direct(alice["id"], bob["id"])
    inserting = asyncio.Event()
    insert = conversations.MessageWriter._insert

    async def slow_insert(writer, batch):
        inserting.set()
        await asyncio.sleep(0.05)  # the sender hangs up while its message is being written
        return await insert(writer, batch)

    monkeypatch.setattr(conversations.MessageWriter, "_insert", slow_insert)
    async with app.app_context():
        subscription = await state().broker.subscribe((room.channel,), 10)
        send = asyncio.create_task(conversations.send_message(alice["id"], bob["id"], "bye", "c-1"))
        await inserting.wait()
        send.cancel()
        with pytest.raises(asyncio.CancelledError):
            await send
        event = await asyncio.wait_for(subscription.queue.get(), 5)
        stored = await Message.get(sender_id=alice["id"], client_id="c-1")
    assert event.message_id == stored.id


@pytest.fixture
async def tight_app(tmp_path):
    async with started_app(tmp_path, send_limit=3, send_window_seconds=60) as application:
        yield application


async def test_sending_faster_than_the_limit_is_429_with_retry_after(tight_app):
    alice, bob = tight_app.test_client(), tight_app.test_client()
    await api_register(alice, "alice")
    b = await api_register(bob, "bob")
    await api_login(alice, "alice")
    for i in range(3):
        response = await alice.post(
            "/send-message", json={"receiver_id": b["id"], "content": f"m{i}", "client_id": f"c{i}"}
        )
        assert response.status_code == 201
    response = await alice.post("/send-message", json={"receiver_id": b["id"], "content": "too many"})
    assert response.status_code == 429
    assert (await response.get_json())["error"] == "too_many_messages"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    # a retry of something already stored is not a new message: it is still answered
    response = await alice.post("/send-message", json={"receiver_id": b["id"], "content": "m0", "client_id": "c0"})
    assert response.status_code == 200
    assert (await tight_app.test_client().get("/healthz")).status_code == 200


async def test_the_limit_is_per_user_over_websockets_too(tight_app):
    alice = tight_app.test_client()
    a = await api_register(alice, "alice")
    b = await api_register(tight_app.test_client(), "bob")
    await api_login(alice, "alice")
    room = f"dm-{min(a['id'], b['id'])}-{max(a['id'], b['id'])}"
    async with alice.websocket(f"/ws/rooms/{room}") as ws:
        frames = []
        for i in range(4):
            await ws.send(f'{{"type": "message", "content": "m{i}"}}')
        while not any(f.get("type") == "error" for f in frames):
            frames.append(json.loads(await ws.receive()))
        error = next(f for f in frames if f["type"] == "error")
        assert error["error"] == "too_many_messages"
