"""Two sharded hfcord processes on one emulator (one data folder): each answers only the
servers of its shard, and only one of them runs fine-tuning jobs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import discord

from bot.client import HFCordBot, ShardedHFCordBot
from bot.settings import Settings
from bot.sim import DiscordEmulator
from tests.support.e2e import BotRunner


def record_interactions(bot: HFCordBot) -> list[int | None]:
    """The guild id of every interaction ``bot`` receives."""
    seen: list[int | None] = []

    async def on_interaction(interaction: discord.Interaction) -> None:
        seen.append(interaction.guild_id)

    bot.add_listener(on_interaction)
    return seen


async def test_two_shard_processes_each_answer_only_their_servers(
    emu: DiscordEmulator, run_bot: BotRunner, make_settings: Callable[..., Settings]
) -> None:
    zero, zero_general = emu.add_guild("Shard Zero", shard=(0, 2))
    one, one_general = emu.add_guild("Shard One", shard=(1, 2))
    async with contextlib.AsyncExitStack() as stack:
        bots = [
            await stack.enter_async_context(
                run_bot(make_settings(shard_count=2, shard_ids=(shard,)))
            )
            for shard in (0, 1)
        ]
        assert all(isinstance(bot, ShardedHFCordBot) for bot in bots)
        assert [bot.shard_ids for bot in bots] == [[0], [1]]
        assert emu.hub.shards == [(0, 2), (1, 2)]
        seen = [record_interactions(bot) for bot in bots]

        first = await emu.slash("sentiment", {"text": "a lovely day"}, channel=zero_general)
        second = await emu.slash("sentiment", {"text": "a rainy day"}, channel=one_general)
        await first.final()
        await second.final()
        assert "confident" in first.text and "confident" in second.text
        assert seen == [[zero.id], [one.id]]
        # Both share the data folder (SQLite in WAL mode); one process runs fine-tuning.
        assert [bot.jobs is not None and bot.jobs.owns_jobs for bot in bots] == [True, False]
