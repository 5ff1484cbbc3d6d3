"""Closing the bot (SIGTERM, `docker stop`) while it works: replies end cleanly first."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.app import open_app
from bot.settings import Settings
from bot.sim import DiscordEmulator
from tests.support.e2e import BotRunner
from tests.support.waiting import wait_until


async def test_closing_mid_generation_ends_the_reply_before_the_connection_closes(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with run_bot(settings.model_copy(update={"max_new_tokens": 4096})) as bot:
        gen = await emu.slash("generate", {"prompt": "Once upon a time", "max_tokens": 4096})
        await gen.wait_until(
            lambda i: bool(i.original and i.original.buttons and "…" not in i.original.content),
            timeout=60,
        )
        await bot.close()  # what SIGTERM does
    assert gen.original is not None
    assert gen.original.buttons == [], "the Stop button outlived the bot"
    assert "stopped" in gen.original.content
    problems = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert problems == [], [r.getMessage() for r in problems]


async def test_closing_just_after_ready_leaves_no_task_behind(
    emu: DiscordEmulator, settings: Settings
) -> None:
    """SIGTERM within discord.py's wait for the guilds after READY (2 s): that task is
    cancelled with the bot, not woken later on a closed client (a traceback in the log)."""
    async with open_app(settings, extensions=[]) as bot:
        emu.track(bot)
        await bot.login(emu.token)
        connection = asyncio.create_task(bot.connect(reconnect=False))
        await wait_until(lambda: bot._connection._ready_task is not None, what="READY")
        waiting_for_guilds = bot._connection._ready_task
        assert waiting_for_guilds is not None
        await bot.close()  # what SIGTERM does
        await asyncio.wait([waiting_for_guilds, connection], timeout=10)
    # discord.py's task ends quietly when cancelled (it catches the cancellation).
    assert waiting_for_guilds.done() and waiting_for_guilds.exception() is None
    assert connection.done() and connection.exception() is None
