"""A bare discord.py bot (no hfcord code) logged in to the emulator, to test the emulator itself."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.sim import DiscordEmulator
from bot.sim.harness import connected
from tests.support.barebot import BareBot


@pytest.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    async with DiscordEmulator(quiet_s=0.1) as emulator:
        with emulator.patch_discord():
            yield emulator


@pytest.fixture
async def bare_bot(emu: DiscordEmulator) -> AsyncIterator[BareBot]:
    bot = BareBot(emu.guild.id)
    async with connected(emu, bot):
        yield bot
        bot.release.set()
