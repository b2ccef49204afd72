"""A socket's plain bounded buffers (chat/mailbox.py): order, bounds, one wait for two mailboxes, the flag."""

from __future__ import annotations

import asyncio

import pytest

from chat.broker import Event, text_message
from chat.mailbox import Flag, Mailbox


async def test_a_mailbox_is_a_bounded_fifo_that_refuses_past_its_size():
    box = Mailbox(3)
    assert box.empty() and box.qsize() == 0
    for item in (1, 2, 3):
        box.put_nowait(item)
    assert box.full()
    with pytest.raises(asyncio.QueueFull):
        box.put_nowait(4)
    assert [box.get_nowait() for _ in range(3)] == [1, 2, 3]
    with pytest.raises(asyncio.QueueEmpty):
        box.get_nowait()
    assert box._items is None  # an emptied mailbox keeps no deque: 10 000 idle sockets keep none
    box.put_nowait(5)
    assert box.qsize() == 1 and box.get_nowait() == 5


async def test_put_waits_for_room_and_get_waits_for_an_item():
    box = Mailbox(1)
    box.put_nowait("first")
    putter = asyncio.ensure_future(box.put("second"))
    await asyncio.sleep(0.01)
    assert not putter.done()  # backpressure: the producer waits, nothing is kept past the bound
    assert await box.get() == "first"
    await asyncio.wait_for(putter, 1)
    assert box.get_nowait() == "second"
    getter = asyncio.ensure_future(box.get())
    await asyncio.sleep(0.01)
    assert not getter.done()
    box.put_nowait("third")
    assert await asyncio.wait_for(getter, 1) == "third"


async def test_two_producers_waiting_for_room_both_get_in_in_turn():
    """hypercorn's connection can put from its reading loop and from its close at the same time
    (lean_hypercorn.py): neither is forgotten, and a producer cancelled once woken hands its room on."""
    box = Mailbox(1)
    box.put_nowait("first")
    reading = asyncio.ensure_future(box.put("data"))
    closing = asyncio.ensure_future(box.put("disconnect"))
    cancelled = asyncio.ensure_future(box.put("never"))
    await asyncio.sleep(0.01)
    assert not (reading.done() or closing.done() or cancelled.done())
    assert box.get_nowait() == "first"  # wakes `reading` ...
    reading.cancel()  # ... which goes before taking the room: `closing` gets it
    await asyncio.sleep(0.01)
    assert reading.cancelled() and closing.done()
    cancelled.cancel()
    assert await box.get() == "disconnect"
    await asyncio.sleep(0.01)
    assert box.empty() and cancelled.cancelled()


async def test_one_wait_for_two_mailboxes_and_a_wake_up():
    outbox, inbox = Mailbox(4), Mailbox(4)
    inbox.listener = outbox
    waiter = asyncio.ensure_future(outbox.wait())
    await asyncio.sleep(0.01)
    inbox.put_nowait("frame")  # the socket's task waits on its outbox and hears its inbox too
    await asyncio.wait_for(waiter, 1)
    waiter = asyncio.ensure_future(outbox.wait())
    await asyncio.sleep(0.01)
    outbox.wake()  # a frame handled, an interruption: nothing queued, the task looks again
    await asyncio.wait_for(waiter, 1)
    assert outbox.empty() and inbox.get_nowait() == "frame"


async def test_a_flag_sets_once_calls_back_and_can_be_awaited():
    flag, calls = Flag(), []
    flag.on_set = lambda: calls.append(1)
    waiter = asyncio.ensure_future(flag.wait())
    await asyncio.sleep(0.01)
    assert not flag.is_set() and not waiter.done()
    flag.set()
    flag.set()
    assert flag.is_set() and calls == [1]
    assert await asyncio.wait_for(waiter, 1) is True
    assert await flag.wait() is True


def test_an_event_carries_one_asgi_message_for_every_socket():
    event = Event.build("room:dm-1-2", {"type": "message", "message": {"id": 7}})
    assert event.asgi == text_message(event.text) == {"type": "websocket.send", "bytes": None, "text": event.text}
    assert Event.from_bytes(event.to_bytes()).asgi == event.asgi  # rebuilt once per event in each worker
