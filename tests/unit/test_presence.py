"""Presence: open sockets counted per user (in process)."""

from __future__ import annotations

from chat.presence import MemoryPresence


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
