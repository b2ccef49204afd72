"""The SIGTERM hook (in process)."""

from __future__ import annotations

import asyncio
import os
import signal

import uvloop

from chat.lifecycle import on_sigterm


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


def test_on_uvloop_the_loops_own_handler_still_runs_after_the_callback_and_alone_after_the_undo():
    """uvloop (the shipped worker class) does not show its handlers: hypercorn's (--workers 0) must survive."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        ran: list[str] = []
        previous_ran, callback_ran = asyncio.Event(), asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, lambda: (ran.append("previous"), previous_ran.set()))
        try:
            restore = on_sigterm(lambda: (ran.append("callback"), callback_ran.set()))
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(asyncio.gather(previous_ran.wait(), callback_ran.wait()), 5)
            assert sorted(ran) == ["callback", "previous"]
            restore()
            previous_ran.clear()
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(previous_ran.wait(), 5)
            await asyncio.sleep(0.1)
            assert sorted(ran) == ["callback", "previous", "previous"]  # the callback is gone, the loop's stays
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    uvloop.run(scenario())
