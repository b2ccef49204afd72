"""The services one application owns (no module-level state: two apps in one process share nothing)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from quart import current_app

from .broker import Broker
from .config import Settings
from .security import HashGate, MemoryThrottle


class MemoryPresence:
    """Who has at least one open websocket in this process."""

    def __init__(self) -> None:
        self._sockets: Counter[int] = Counter()

    def connect(self, user_id: int) -> bool:
        """Count one more socket; True when the user just came online."""
        self._sockets[user_id] += 1
        return self._sockets[user_id] == 1

    def disconnect(self, user_id: int) -> bool:
        """Count one socket less; True when the user just went offline."""
        self._sockets[user_id] -= 1
        if self._sockets[user_id] <= 0:
            del self._sockets[user_id]
            return True
        return False

    async def online(self, user_ids: list[int]) -> set[int]:
        return {user_id for user_id in user_ids if self._sockets[user_id] > 0}


@dataclass
class AppState:
    settings: Settings
    broker: Broker
    hash_gate: HashGate
    throttle: MemoryThrottle = field(default_factory=MemoryThrottle)
    presence: MemoryPresence = field(default_factory=MemoryPresence)


def state() -> AppState:
    return current_app.extensions["chat"]
