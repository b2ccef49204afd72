"""Unit tests of the event broker, presence, the SIGTERM hook and store-then-publish (in process)."""

from __future__ import annotations

import asyncio
import os
import signal

import orjson
import pytest

from chat import conversations
from chat.broker import Event, MemoryBroker, RedisBroker
from chat.lifecycle import on_sigterm
from chat.models import Message
from chat.presence import MemoryPresence
from chat.rooms import Room
from chat.state import state

from .support import BACKEND, REDIS_URL


def message_event(room: str, message_id: int) -> Event:
    return Event.build(f"room:{room}", {"type": "message", "message": {"id": message_id, "content": "hi"}})


def test_event_build_and_wire_format():
    event = message_event("dm-1-2", 7)
    assert (event.channel, event.type, event.message_id, event.user_id) == ("room:dm-1-2", "message", 7, None)
    assert orjson.loads(event.text) == {"type": "message", "message": {"id": 7, "content": "hi"}}
    typing = Event.build("room:dm-1-2", {"type": "typing", "user_id": 2})
    assert (typing.type, typing.message_id, typing.user_id) == ("typing", None, 2)
    for original in (event, typing):  # what a Redis broker carries between processes
        assert Event.from_bytes(original.to_bytes()) == original


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


async def test_presence_counts_sockets_per_user():
    presence = MemoryPresence()
    assert await presence.connect(1) is True  # first socket anywhere: came online
    assert await presence.connect(1) is False
    assert await presence.connect(2) is True
    assert await presence.online([1, 2, 3]) == {1, 2}
    assert await presence.disconnect(1) is False  # one socket left
    assert await presence.online([1]) == {1}
    assert await presence.disconnect(1) is True  # the last one: went offline
    assert await presence.disconnect(2) is True
    assert await presence.online([1, 2]) == set()


async def test_on_sigterm_runs_the_callback_then_the_previous_handler_and_restores_it():
    loop = asyncio.get_running_loop()
    previous_ran, callback_ran = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    def previous() -> None:
        order.append("previous")
        previous_ran.set()

    def callback() -> None:
        order.append("callback")
        callback_ran.set()

    loop.add_signal_handler(signal.SIGTERM, previous)  # as hypercorn's own handler with --workers 0
    try:
        restore = on_sigterm(callback)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(previous_ran.wait(), callback_ran.wait()), 5)
        assert order == ["callback", "previous"]
        restore()
        assert loop._signal_handlers[signal.SIGTERM]._callback is previous
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


# ---------------------------------------------------------------- store-then-publish


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
