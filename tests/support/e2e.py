"""Types shared by the end-to-end tests (fixtures live in ``tests/e2e/conftest.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from discord.ext import commands

from bot.client import HFCordBot

CogFactory = Callable[[HFCordBot], commands.Cog]
# `run_bot(settings, cogs=[...])`: an async context manager running the real bot on the emulator.
BotRunner = Callable[..., contextlib.AbstractAsyncContextManager[HFCordBot]]
