"""Run a discord.py bot against an emulator: log in, sync, connect, wait until ready, close."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from discord import AutoShardedClient
from discord.ext import commands

from bot.sim.emulator import DiscordEmulator

log = logging.getLogger(__name__)


async def _identify_at_once(shard_id: int | None, *, initial: bool = False) -> None:
    return None


@contextlib.asynccontextmanager
async def connected(
    emu: DiscordEmulator,
    bot: commands.Bot,
    *,
    sync_global: bool = False,
    ready_timeout: float = 30.0,
) -> AsyncIterator[commands.Bot]:
    """Log `bot` in to `emu` (which must be patched in) and yield it once it is ready.

    `sync_global` also bulk-overwrites the global commands after setup_hook, as
    `python -m bot sync` does, so commands exist in every emulated guild.
    """
    # On a loopback there are no late GUILD_CREATEs to wait for; discord.py waits 2 s by default.
    bot._connection.guild_ready_timeout = 0.05
    if isinstance(bot, AutoShardedClient):
        # Nor an IDENTIFY rate limit: discord.py waits 5 s before each shard after the first.
        bot.before_identify_hook = _identify_at_once  # type: ignore[method-assign]
    emu.track(bot)
    await bot.login(emu.token)  # runs setup_hook: cogs load, dev-guild sync
    if sync_global:
        await bot.tree.sync()
    task = asyncio.create_task(bot.connect(reconnect=True), name="sim-bot-connect")
    try:
        ready = asyncio.create_task(bot.wait_until_ready())
        done, _ = await asyncio.wait(
            {ready, task}, timeout=ready_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            if task in done:
                task.result()  # re-raise why the bot stopped (e.g. LoginFailure)
            raise TimeoutError(f"the bot was not ready within {ready_timeout} s")
        yield bot
    finally:
        await bot.close()
        try:
            await asyncio.wait_for(task, 10)
        except Exception:
            log.debug("bot connect task ended with an error on close", exc_info=True)
