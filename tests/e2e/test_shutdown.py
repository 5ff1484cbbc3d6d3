"""Closing the bot (SIGTERM, `docker stop`) while it works: replies end cleanly first."""

from __future__ import annotations

import logging

import pytest

from bot.settings import Settings
from bot.sim import DiscordEmulator
from tests.support.e2e import BotRunner


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
