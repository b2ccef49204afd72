"""The services one application owns (no module-level state: two apps in one process share nothing)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from quart import current_app
from quart.globals import _cv_app

from .page_cache import PageCache

if TYPE_CHECKING:  # services.build_state makes them: security imports state() at run time, not the reverse
    from .broker import Broker
    from .config import Settings
    from .file_store import FileStore
    from .metrics import Metrics
    from .presence import Presence
    from .security import HashGate, SessionCache, Throttle
    from .sockets import SocketLimits


class GoingAway(asyncio.Event):
    """Set when the server begins to shut down. Each open websocket registers a callback in `callbacks` (its one task
    is interrupted wherever it waits) rather than keep a task of its own waiting for the event."""

    def __init__(self) -> None:
        super().__init__()
        self.callbacks: set[Callable[[], None]] = set()

    def set(self) -> None:
        super().set()
        for callback in tuple(self.callbacks):
            callback()


@dataclass
class AppState:
    settings: Settings
    broker: Broker
    presence: Presence
    throttle: Throttle
    hash_gate: HashGate
    sockets: SocketLimits
    sessions: SessionCache  # sessions checked in the last seconds
    pages: PageCache = field(default_factory=PageCache)  # history answers while their room is unchanged
    redis: object | None = None  # the shared Redis client, when CHAT_BROKER_URL is redis://
    file_store: FileStore | None = None  # files.store(): CHAT_FILES_URL's store, opened on first use
    message_writer: object | None = None  # conversations.MessageWriter, made on the first send
    known_users: set[int] = field(default_factory=set)  # ids seen to exist (see conversations.require_user)
    # set when the server begins to shut down: open websockets close with 1001
    going_away: GoingAway = field(default_factory=GoingAway)
    restore_signal: Callable[[], None] = lambda: None
    metrics: Metrics = None  # type: ignore[assignment] - build_state sets it (metrics.Metrics: records nothing)

    async def start(self) -> None:
        await self.broker.start()
        await self.presence.start()

    async def stop(self) -> None:
        self.hash_gate.close()
        await self.presence.stop()
        await self.broker.stop()
        if self.file_store is not None:
            await self.file_store.close()
        if self.redis is not None:
            await self.redis.aclose()


def state() -> AppState:
    """The application's state. Read from Quart's context variable itself: a send asks for it five times, and
    each look-up through the current_app proxy costs ~0.6 µs more (werkzeug's LocalProxy)."""
    context = _cv_app.get(None)
    if context is None:
        return current_app.extensions["chat"]  # outside an application context: the proxy's own error
    return context.app.extensions["chat"]
