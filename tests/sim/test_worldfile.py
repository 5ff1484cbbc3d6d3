"""A world saved to a file comes back with the same ids, and new ids never collide with them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bot.sim import DiscordEmulator
from bot.sim.clock import SimClock, SnowflakeFactory, snowflake_time_ms
from bot.sim.harness import connected
from bot.sim.worldfile import WorldFileError, read_world, save_world
from tests.support.barebot import BareBot


def saved_ids(path: Path) -> set[int]:
    data = json.loads(path.read_text(encoding="utf-8"))
    ids = {int(data["application_id"])} | {int(u["id"]) for u in data["users"]}
    for guild in data["guilds"]:
        ids |= {int(guild["id"])} | {int(r["id"]) for r in guild["roles"]}
        ids |= {int(c["id"]) for c in guild["channels"]}
    return ids


def test_a_saved_world_comes_back_with_its_ids_names_roles_and_thread(tmp_path: Path) -> None:
    first = DiscordEmulator()
    path = tmp_path / "world.json"
    save_world(path, first.state, first.world)

    again = DiscordEmulator(saved_world=read_world(path))
    assert again.state.application_id == first.state.application_id
    assert again.bot_user.id == first.bot_user.id
    for name in ("admin", "member", "guild", "channel", "thread", "other_guild", "other_channel"):
        before, after = getattr(first, name), getattr(again, name)
        assert (after.id, after.name) == (before.id, before.name), name
    assert again.thread.parent_id == again.channel.id and again.thread.is_thread
    assert again.admin_role.id in again.guild.members[again.admin.id].roles
    assert again.guild.owner_id == again.admin.id
    assert set(again.guild.members) == {again.admin.id, again.member.id, again.bot_user.id}
    assert set(again.other_guild.members) == set(first.other_guild.members)
    assert again.guild.permissions_for(again.member.id) == first.guild.permissions_for(
        first.member.id
    )


def test_new_ids_after_loading_are_new_snowflakes(tmp_path: Path) -> None:
    first = DiscordEmulator()
    path = tmp_path / "world.json"
    save_world(path, first.state, first.world)
    old = saved_ids(path)
    again = DiscordEmulator(saved_world=read_world(path))
    stranger = again.add_user("stranger", guilds=[again.guild])
    assert stranger.id not in old and stranger.id > max(old)
    assert abs(snowflake_time_ms(stranger.id) - time.time() * 1000) < 60_000


def test_ids_stay_unique_when_the_clock_is_behind_the_saved_ones() -> None:
    ids = SnowflakeFactory(SimClock())
    from_the_future = ids.next() + (3600 * 1000 << 22)  # made "an hour later" elsewhere
    ids.reserve_up_to(from_the_future)
    assert [ids.next() for _ in range(3)] == [from_the_future + n for n in (1, 2, 3)]


async def test_a_client_logs_in_to_a_restored_world(tmp_path: Path) -> None:
    path = tmp_path / "world.json"
    first = DiscordEmulator()
    save_world(path, first.state, first.world)
    async with DiscordEmulator(saved_world=read_world(path)) as emu:
        with emu.patch_discord():
            bot = BareBot(emu.guild.id)
            async with connected(emu, bot):
                assert {g.id for g in bot.guilds} == {first.guild.id, first.other_guild.id}
                guild = bot.get_guild(first.guild.id)
                assert guild is not None and guild.get_thread(first.thread.id) is not None
                inter = await emu.slash("echo", {"text": "same place"}, channel=emu.thread)
                await inter.final()
                assert inter.payload["channel_id"] == str(first.thread.id)


def test_unreadable_or_damaged_files_are_named_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "world.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(WorldFileError, match=r"cannot read the world file .*world\.json"):
        read_world(path)
    path.write_text(json.dumps({"format": 99}), encoding="utf-8")
    with pytest.raises(WorldFileError, match="not a world file of format 1"):
        read_world(path)

    emu = DiscordEmulator()
    save_world(path, emu.state, emu.world)
    data = json.loads(path.read_text(encoding="utf-8"))
    del data["named"]["thread"]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(WorldFileError, match=r"world\.json is damaged"):
        DiscordEmulator(saved_world=read_world(path))
