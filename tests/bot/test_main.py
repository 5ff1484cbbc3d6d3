"""`python -m bot`'s run loop: a stop signal closes the bot in a task that is held and logged."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest

from bot.__main__ import close_on_signals
from tests.support.waiting import wait_until


class FailingToClose:
    def __init__(self) -> None:
        self.close_calls = 0
        self.release = asyncio.Event()

    async def close(self) -> None:
        self.close_calls += 1
        await self.release.wait()
        raise RuntimeError("could not close")


async def test_a_stop_signal_closes_the_bot_and_a_failure_to_close_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = FailingToClose()
    loop = asyncio.get_running_loop()
    with caplog.at_level(logging.ERROR, logger="models.background"):
        tasks = close_on_signals(bot, signals=(signal.SIGUSR1,))
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            await wait_until(lambda: bot.close_calls == 1, what="the bot to be closed")
            assert tasks.running == 1  # held while it runs, not left to the garbage collector
            bot.release.set()
            await tasks.wait()
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)
    assert tasks.running == 0
    (record,) = [r for r in caplog.records if r.name == "models.background"]
    assert "close-on-SIGUSR1" in record.getMessage() and record.exc_info is not None
