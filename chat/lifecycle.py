"""An application's life: the database and the services start before the first request and stop after the
last; a SIGTERM closes every open websocket with 1001 first."""

from __future__ import annotations

import asyncio
import gc
import signal
import threading
from collections.abc import AsyncIterator, Callable

from quart import Quart

from .accounts import follow_account_changes
from .config import Settings
from .db import close_db, init_db
from .files import sweep_forever
from .state import AppState


def install_lifecycle(app: Quart, settings: Settings, app_state: AppState) -> None:
    """Open the database and start the services before serving; on the way out, close sockets first."""

    @app.before_serving
    async def start() -> None:
        await init_db(settings)
        await app_state.start()
        app_state.restore_signal = on_sigterm(app_state.going_away.set)
        # What start-up built (modules, the app, schemas) lives as long as the process: keep it out of the cyclic
        # garbage collector's scans, or each full collection walks all of it (80 ms here) while requests wait.
        gc.collect()
        gc.freeze()

    @app.while_serving
    async def follow_accounts() -> AsyncIterator[None]:
        follower = asyncio.create_task(follow_account_changes(app_state), name="account-changes")
        # every worker sweeps (crashed uploads, files never sent): each row is removed by one DELETE, so the
        # workers never remove one twice (files.sweep_unsent)
        sweeper = asyncio.create_task(sweep_forever(app_state), name="files-sweep")
        yield
        sweeper.cancel()
        follower.cancel()
        # bounded: a cancellation that lands inside redis-py's SUBSCRIBE can leave its clean-up waiting on the
        # connection, which app_state.stop() closes next
        await asyncio.wait({follower}, timeout=FOLLOWER_STOP_SECONDS)

    @app.after_serving
    async def stop() -> None:
        app_state.going_away.set()
        app_state.restore_signal()
        await app_state.stop()
        await close_db()


LONE_SIGTERM_EXIT_AFTER = 30.0
FOLLOWER_STOP_SECONDS = 1.0


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
    if not hasattr(loop, "_signal_handlers") and callable(signal.getsignal(signal.SIGTERM)):
        return _chain_unreadable(loop, callback)
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


def _chain_unreadable(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> Callable[[], None]:
    """SIGTERM already has a handler on a loop that does not show it (uvloop keeps its handlers out of Python's
    reach; hypercorn's --workers 0 --worker-class uvloop installs one): replacing it would lose hypercorn's
    shutdown. Leave the loop's handler as it is, and hook the Python-level one that asks the loop to run it
    (uvloop's): ours schedules `callback`, then passes the signal on, so the loop still runs its own handler."""
    passed_on = signal.getsignal(signal.SIGTERM)

    def handle(signum: int, frame: object) -> None:
        loop.call_soon_threadsafe(callback)
        passed_on(signum, frame)

    signal.signal(signal.SIGTERM, handle)

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is handle:
            signal.signal(signal.SIGTERM, passed_on)

    return restore
