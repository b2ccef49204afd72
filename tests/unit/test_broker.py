"""The event broker (memory and Redis), in process: the wire format, delivery to subscribers, order, overflow."""

from __future__ import annotations

import asyncio
import os

import orjson
import pytest

from chat.broker import Event, MemoryBroker, RedisBroker
from testkit.backends import BACKEND, REDIS_URL


def message_event(room: str, message_id: int) -> Event:
    return Event.build(f"room:{room}", {"type": "message", "message": {"id": message_id, "content": "hi"}})


def test_event_build_and_wire_format():
    event = message_event("dm-1-2", 7)
    assert (event.channel, event.type, event.message_id, event.user_id) == ("room:dm-1-2", "message", 7, None)
    assert orjson.loads(event.text) == {"type": "message", "message": {"id": 7, "content": "hi"}}
    typing = Event.build("room:dm-1-2", {"type": "typing", "user_id": 2})
    assert (typing.type, typing.message_id, typing.user_id) == ("typing", None, 2)
    stored = Event.build("room:dm-1-2", {"type": "message", "message": {"id": 8}}, stored_at=1764782000.25)
    assert stored.stored_at == 1764782000.25 and event.stored_at is None  # the fan-out latency's start
    for original in (event, typing, stored):  # what a Redis broker carries between processes
        assert Event.from_bytes(original.to_bytes()) == original


def test_an_event_on_another_channel_is_the_same_event_sharing_its_encoded_frame():
    event = Event.build("room:dm-1-2", {"type": "message", "message": {"id": 7, "content": "hi"}}, 12.5)
    inbox = event.on("inbox:2")
    assert inbox == Event("inbox:2", "message", event.text, 7, None, 12.5)
    assert inbox.asgi is event.asgi and event.channel == "room:dm-1-2"


async def test_publish_reaches_every_subscriber_of_the_channel_only():
    broker = MemoryBroker()
    assert broker.ordered
    first = await broker.subscribe(("room:dm-1-2", "presence:2"), 10)
    second = await broker.subscribe(("room:dm-1-2",), 10)
    elsewhere = await broker.subscribe(("room:dm-1-3",), 10)
    event = message_event("dm-1-2", 1)
    await broker.publish(event)
    await broker.publish(Event.build("presence:2", {"type": "presence", "user_id": 2, "online": True}))
    assert first.queue.get_nowait() is event and second.queue.get_nowait() is event  # encoded once
    assert first.queue.get_nowait().type == "presence"
    assert second.queue.empty() and elsewhere.queue.empty()


async def test_events_arrive_in_publish_order():
    broker = MemoryBroker()
    subscription = await broker.subscribe(("room:dm-1-2",), 100)
    for message_id in range(1, 51):
        await broker.publish(message_event("dm-1-2", message_id))
    assert [subscription.queue.get_nowait().message_id for _ in range(50)] == list(range(1, 51))


async def publish_many_in_order(broker) -> None:
    """A batch of three messages, each on its room and two inboxes: every subscriber gets its channels' events
    in the batch's order."""
    room = await broker.subscribe(("room:dm-1-2",), 100)
    inbox = await broker.subscribe(("user:1", "user:2"), 100)
    events = [Event.build(channel, {"type": "message", "message": {"id": message_id}})
              for message_id in (1, 2, 3) for channel in ("room:dm-1-2", "user:1", "user:2")]  # fmt: skip
    await broker.publish_many(events)
    await broker.publish_many([])  # nothing to send: no round trip, no error
    got_room = [(await asyncio.wait_for(room.queue.get(), 5)).message_id for _ in range(3)]
    got_inbox = [(await asyncio.wait_for(inbox.queue.get(), 5)) for _ in range(6)]
    assert got_room == [1, 2, 3]
    assert [(event.channel, event.message_id) for event in got_inbox] == [
        (channel, message_id) for message_id in (1, 2, 3) for channel in ("user:1", "user:2")
    ]


async def test_publish_many_delivers_a_batch_in_order():
    await publish_many_in_order(MemoryBroker())


async def test_unsubscribe_stops_delivery_and_forgets_empty_channels():
    broker = MemoryBroker()
    kept = await broker.subscribe(("room:dm-1-2",), 10)
    gone = await broker.subscribe(("room:dm-1-2", "session:9"), 10)
    await broker.unsubscribe(gone)
    await broker.publish(message_event("dm-1-2", 1))
    await broker.publish(Event.build("session:9", {"type": "revoked"}))
    assert gone.queue.empty() and kept.queue.qsize() == 1
    await broker.unsubscribe(kept)
    assert broker._channels == {}  # no memory kept for channels nobody listens to


async def test_a_full_queue_marks_the_subscription_overflowed_and_drops_the_rest():
    broker = MemoryBroker()
    subscription = await broker.subscribe(("room:dm-1-2",), 3)
    for message_id in range(1, 6):
        await broker.publish(message_event("dm-1-2", message_id))
    assert subscription.overflowed.is_set()
    # what was queued stays intact (the writer may flush it); nothing more is queued: memory stays bounded
    assert [subscription.queue.get_nowait().message_id for _ in range(3)] == [1, 2, 3]
    await broker.publish(message_event("dm-1-2", 6))
    assert subscription.queue.empty()


# ---------------------------------------------------------------- store-then-publish


@pytest.mark.skipif(BACKEND != "postgres", reason="needs the Redis of the PostgreSQL + Redis pass")
async def test_first_subscriptions_made_at_once_share_one_redis_connection_and_all_deliver():
    """Twenty sockets subscribe at the same moment to a broker that has just connected. redis-py takes the pub/sub
    connection on the first SUBSCRIBE, so without the broker taking it first, the simultaneous first SUBSCRIBEs
    each took a connection of their own: the reader listened on one, and the others' channels were never
    confirmed (their sockets refused with 503) nor delivered. Runs against the suite's Redis."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(REDIS_URL)
    prefix = f"chat-test-{os.getpid()}-{id(client)}:"
    broker = RedisBroker(client, prefix)
    await broker.start()
    try:
        # as on a busy server: the pool's idle connection is in use, so taking one means connecting a new one
        busy = await client.connection_pool.get_connection()
        try:
            subscriptions = await asyncio.gather(
                *(broker.subscribe((f"room:first-{number}", f"presence:{number}"), 16) for number in range(20))
            )
        finally:
            await client.connection_pool.release(busy)
        for number in range(20):
            await broker.publish(message_event(f"first-{number}", number + 1))
        for number, subscription in enumerate(subscriptions):
            event = await asyncio.wait_for(subscription.queue.get(), 5)
            assert event.message_id == number + 1
    finally:
        await broker.stop()
        await client.aclose()


@pytest.mark.skipif(BACKEND != "postgres", reason="needs the Redis of the PostgreSQL + Redis pass")
async def test_publish_many_through_redis_delivers_a_batch_in_order():
    """The batch goes out as one pipeline (one round trip); Redis hands it on in order."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(REDIS_URL)
    broker = RedisBroker(client, f"chat-test-{os.getpid()}-{id(client)}:")
    await broker.start()
    try:
        await publish_many_in_order(broker)
    finally:
        await broker.stop()
        await client.aclose()
