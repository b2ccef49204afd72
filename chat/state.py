"""The services one application owns (no module-level state: two apps in one process share nothing)."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from quart import current_app

if TYPE_CHECKING:  # services.build_state makes them: security imports state() at run time, not the reverse
    from .broker import Broker
    from .config import Settings
    from .presence import Presence
    from .security import HashGate, SessionCache, Throttle
    from .sockets import SocketLimits


@dataclass
class AppState:
    settings: Settings
    broker: Broker
    presence: Presence
    throttle: Throttle
    hash_gate: HashGate
    sockets: SocketLimits
    sessions: SessionCache  # sessions checked in the last seconds
    redis: object | None = None  # the shared Redis client, when CHAT_BROKER_URL is redis://
    message_writer: object | None = None  # conversations.MessageWriter, made on the first send
    known_users: set[int] = field(default_factory=set)  # ids seen to exist (see conversations.require_user)
    # set when the server begins to shut down: open websockets close with 1001
    going_away: asyncio.Event = field(default_factory=asyncio.Event)
    restore_signal: Callable[[], None] = lambda: None

    async def start(self) -> None:
        await self.broker.start()
        await self.presence.start()

    async def stop(self) -> None:
        self.hash_gate.close()
        await self.presence.stop()
        await self.broker.stop()
        if self.redis is not None:
            await self.redis.aclose()


def state() -> AppState:
    return current_app.extensions["chat"]


LONE_SIGTERM_EXIT_AFTER = 30.0


def _default_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.raise_signal(signal.SIGTERM)


def on_sigterm(callback: Callable[[], None]) -> Callable[[], None]:
    """Call `callback` when this process gets SIGTERM, then whatever handled SIGTERM before; returns an undo.

    hypercorn gives the application no notice that shutdown began: it stops accepting, waits out the
    graceful timeout and cancels what is left. Websockets never end by themselves, so without this they would
    be cut (1006) instead of closed with 1001 (going away) for clients to reconnect elsewhere and resume.
    With --workers 0 hypercorn's own loop handler runs after ours. A worker that hypercorn spawned has no
    SIGTERM handler of its own: it stops when the master (which got SIGTERM too, from systemd or a terminal's
    process group) tells it to; if it is still alive long after a SIGTERM sent to it alone, it exits as the
    default action would have.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous = getattr(loop, "_signal_handlers", {}).get(signal.SIGTERM)  # an asyncio.Handle, or None

    def handle() -> None:
        callback()
        if previous is not None:
            previous._run()
        else:
            loop.call_later(LONE_SIGTERM_EXIT_AFTER, _default_sigterm)

    loop.add_signal_handler(signal.SIGTERM, handle)

    def restore() -> None:
        loop.remove_signal_handler(signal.SIGTERM)
        if previous is not None:
            loop.add_signal_handler(signal.SIGTERM, previous._callback, *previous._args)

    return restore
