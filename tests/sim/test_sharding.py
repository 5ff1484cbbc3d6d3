"""Gateway sharding in the emulator: IDENTIFY with a shard pair, each guild's events on the shard
Discord would use (``(guild_id >> 22) % shard_count``), several connections at once."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.sim import DiscordEmulator, SimChannel, SimGuild
from bot.sim.clock import SimClock, SnowflakeFactory
from bot.sim.gateway import shard_of
from bot.sim.harness import connected
from tests.support.barebot import ShardedBareBot
from tests.support.waiting import wait_until


@pytest.fixture
def two_shards(emu: DiscordEmulator) -> tuple[tuple[SimGuild, SimChannel], ...]:
    """A server on shard 0 and one on shard 1 of 2 (the default world's servers stay, on
    whichever shard their ids give)."""
    return (
        emu.add_guild("Shard Zero", shard=(0, 2)),
        emu.add_guild("Shard One", shard=(1, 2)),
    )


@contextlib.asynccontextmanager
async def shard_bots(
    emu: DiscordEmulator, *shard_ids: list[int] | None, count: int = 2
) -> AsyncIterator[list[ShardedBareBot]]:
    async with contextlib.AsyncExitStack() as stack:
        bots = []
        for ids in shard_ids:
            bot = ShardedBareBot(emu.guild.id, shard_count=count, shard_ids=ids)
            await stack.enter_async_context(connected(emu, bot))
            bots.append(bot)
        yield bots


def guilds_on(emu: DiscordEmulator, shard_id: int, count: int) -> set[int]:
    return {g for g in emu.state.guilds if shard_of(g, count) == shard_id}


def test_guilds_made_for_a_shard_route_there(
    emu: DiscordEmulator, two_shards: tuple[tuple[SimGuild, SimChannel], ...]
) -> None:
    (zero, _), (one, _) = two_shards
    assert (zero.id >> 22) % 2 == 0 and shard_of(zero.id, 2) == 0
    assert (one.id >> 22) % 2 == 1 and shard_of(one.id, 2) == 1
    later, _ = emu.add_guild("Shard Two of Three", shard=(2, 3))
    assert shard_of(later.id, 3) == 2 and later.id > one.id  # ids still only grow


async def test_two_processes_each_get_only_their_shards_guilds(
    emu: DiscordEmulator, two_shards: tuple[tuple[SimGuild, SimChannel], ...]
) -> None:
    async with shard_bots(emu, [0], [1]) as (bot0, bot1):
        assert emu.hub.shards == [(0, 2), (1, 2)]
        assert {g.id for g in bot0.guilds} == guilds_on(emu, 0, 2)
        assert {g.id for g in bot1.guilds} == guilds_on(emu, 1, 2)
        assert bot0.guilds and bot1.guilds
        assert [s.shard for s in emu.hub.live.values()] == [[0, 2], [1, 2]]


async def test_each_guilds_commands_reach_only_the_bot_holding_its_shard(
    emu: DiscordEmulator, two_shards: tuple[tuple[SimGuild, SimChannel], ...]
) -> None:
    (zero, zero_general), (one, one_general) = two_shards
    async with shard_bots(emu, [0], [1]) as (bot0, bot1):
        await bot0.tree.sync()  # global commands, in every server
        first = await emu.slash("echo", {"text": "zero"}, channel=zero_general)
        second = await emu.slash("echo", {"text": "one"}, channel=one_general)
        await first.final()
        await second.final()
        assert first.text == "zero" and second.text == "one"
        assert bot0.received == [(zero.id, 0)]
        assert bot1.received == [(one.id, 1)]


async def test_one_process_can_hold_every_shard(
    emu: DiscordEmulator, two_shards: tuple[tuple[SimGuild, SimChannel], ...]
) -> None:
    (zero, zero_general), (one, one_general) = two_shards
    async with shard_bots(emu, None) as (bot,):
        assert sorted(bot.shards) == [0, 1]
        assert {g.id for g in bot.guilds} == set(emu.state.guilds)
        await bot.tree.sync()
        for channel in (zero_general, one_general):
            inter = await emu.slash("echo", {"text": "hi"}, channel=channel)
            await inter.final()
        assert bot.received == [(zero.id, 0), (one.id, 1)]


async def test_direct_messages_go_to_shard_zero(
    emu: DiscordEmulator, two_shards: tuple[tuple[SimGuild, SimChannel], ...]
) -> None:
    async with shard_bots(emu, [0], [1]) as (bot0, bot1):
        await emu.post_message(emu.dm(emu.member), emu.member, "hello bot")
        await wait_until(lambda: bool(bot0.seen_messages), what="the DM on shard 0")
        assert [m.content for m in bot0.seen_messages] == ["hello bot"]
        assert bot1.seen_messages == []


async def test_every_shard_resumes_its_own_session_after_a_reconnect(
    emu: DiscordEmulator, two_shards: tuple[tuple[SimGuild, SimChannel], ...]
) -> None:
    _, (_, one_general) = two_shards
    async with shard_bots(emu, [0], [1]) as (bot0, bot1):
        await bot0.tree.sync()
        await emu.reconnect()
        await wait_until(lambda: emu.hub.resume_count == 2, what="both shards to resume")
        assert emu.hub.identify_count == 2
        inter = await emu.slash("echo", {"text": "after"}, channel=one_general)
        await inter.final()
        assert inter.text == "after" and bot1.received[-1][1] == 1


async def test_a_new_shard_count_replaces_the_old_sessions(
    emu: DiscordEmulator, two_shards: tuple[tuple[SimGuild, SimChannel], ...]
) -> None:
    async with shard_bots(emu, [0], [1]):
        assert emu.hub.shards == [(0, 2), (1, 2)]
    async with shard_bots(emu, None, count=3) as (bot,):
        assert emu.hub.shards == [(0, 3), (1, 3), (2, 3)]
        assert {g.id for g in bot.guilds} == set(emu.state.guilds)
        await bot.tree.sync()
        (_, one_general) = two_shards[1]
        inter = await emu.slash("echo", {"text": "resharded"}, channel=one_general)
        await inter.final()
        assert inter.text == "resharded" and len(bot.received) == 1


@pytest.mark.parametrize("shard", [[2, 2], [0, 0], [-1, 2], [0]])
async def test_identify_with_an_invalid_shard_is_closed_with_4010(
    emu: DiscordEmulator, shard: list[int]
) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(emu.gateway_url) as ws:
        hello = json.loads((await ws.receive()).data)
        assert hello["op"] == 10
        identify = {"token": emu.token, "intents": 1, "properties": {}, "shard": shard}
        await ws.send_str(json.dumps({"op": 2, "d": identify}))
        closed = await ws.receive()
        assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 4010
    assert emu.hub.live == {}


def test_time_passing_between_reserving_and_making_an_id_keeps_its_shard() -> None:
    clock = SimClock()
    ids = SnowflakeFactory(clock)
    for count in (2, 3, 5):
        for shard_id in range(count):
            ids.reserve_for_shard(shard_id, count)
            clock.advance(0.013)  # the guild is made a few milliseconds later
            made = ids.next()
            assert shard_of(made, count) == shard_id
            assert ids.next() > made
