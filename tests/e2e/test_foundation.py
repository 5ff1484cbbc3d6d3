"""The bot's foundation end to end: sync, the 3-second rule, replies, errors, checks, budgets."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from bot.client import HFCordBot
from bot.settings import Settings
from bot.sim import CommandNotVisible, DiscordEmulator, InteractionFailed
from tests.support.e2e import BotRunner
from tests.support.probes import Probes

REAL_COMMANDS = {"help", "generate", "sentiment", "ner", "context", "ask", "models"}
REAL_MENUS = {"Analyze sentiment", "Find entities"}


async def test_every_cog_loads_and_syncs_to_the_dev_guild_and_globally(
    emu: DiscordEmulator, hfcord: HFCordBot
) -> None:
    assert hfcord.failed_extensions == {}
    in_dev_guild = {c.name for c in emu.state.guild_commands[emu.guild.id].values()}
    global_ = {c.name for c in emu.state.global_commands.values()}
    assert REAL_COMMANDS | REAL_MENUS <= in_dev_guild
    assert REAL_COMMANDS | REAL_MENUS <= global_
    assert all(r.ok for r in emu.requests_for(method="PUT"))


async def test_help_lists_every_synced_command(emu: DiscordEmulator, hfcord: HFCordBot) -> None:
    inter = await emu.slash("help")
    await inter.final()
    assert inter.ephemeral
    text = inter.text
    for command in emu.state.global_commands.values():
        if command.type != 1:
            assert command.name in text
        elif any(o["type"] == 1 for o in command.options):
            for sub in command.options:
                assert f"/{command.name} {sub['name']}" in text
        else:
            assert f"/{command.name}" in text


@pytest.fixture
async def probed(run_bot: BotRunner, settings: Settings) -> HFCordBot:
    async with run_bot(settings, cogs=[Probes]) as bot:
        yield bot


async def test_deferred_command_gets_its_final_reply(
    emu: DiscordEmulator, probed: HFCordBot
) -> None:
    inter = await emu.slash("probe_echo", {"text": "hello"})
    await inter.final()
    assert inter.response_type == 5  # deferred first, within the 3 s
    assert inter.original is not None and inter.original.contents == ["", "hello"]
    assert inter.rejected == []


async def test_command_that_does_not_defer_fails_the_3_second_rule(
    emu: DiscordEmulator, probed: HFCordBot
) -> None:
    started = time.monotonic()
    inter = await emu.slash("probe_nodefer")
    with pytest.raises(InteractionFailed):
        await inter.final(timeout=10)
    assert time.monotonic() - started < 4.5
    # The late answer (and the error handler's attempt after it) get Discord's 10062.
    await inter.wait_until(lambda i: len(i.requests) >= 2, timeout=10, require_ack=False)
    assert {r.error_code for r in inter.requests} == {10062}
    probes = probed.get_cog("Probes")
    assert isinstance(probes, Probes) and probes.late_errors[0].code == 10062
    after = await emu.slash("probe_echo", {"text": "still alive"})  # the bot kept running
    await after.final()


async def test_long_reply_is_split_under_2000_characters(
    emu: DiscordEmulator, probed: HFCordBot
) -> None:
    line = "A sentence that is long enough to need several messages when repeated. " * 4
    inter = await emu.slash("probe_echo", {"text": line.strip(), "repeat": 20})
    await inter.final()
    contents = inter.contents
    assert len(contents) >= 3
    assert all(0 < len(c) <= 2000 for c in contents)
    assert "".join(contents).replace("\n", "") == ("\n".join([line.strip()] * 20)).replace("\n", "")
    assert inter.rejected == []


async def test_mentions_in_replies_never_ping(emu: DiscordEmulator, probed: HFCordBot) -> None:
    text = f"@everyone @here {emu.admin.mention} {emu.admin_role.mention}"
    inter = await emu.slash("probe_echo", {"text": text})
    await inter.final()
    assert inter.original is not None and inter.original.content == text
    assert inter.original.mentions == frozenset()


async def test_non_admin_is_denied_an_admin_command(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    make_settings: Callable[..., Settings],
) -> None:
    helper = emu.add_user("helper", guilds=[emu.guild])
    settings = make_settings(admin_ids=frozenset({helper.id}))
    async with run_bot(settings, cogs=[Probes]):
        denied = await emu.slash("probe_admin", user=emu.member)
        await denied.final()
        assert denied.ephemeral
        assert "Only server administrators" in denied.text
        for allowed_user in (emu.admin, helper):  # Administrator permission; configured admin id
            allowed = await emu.slash("probe_admin", user=allowed_user)
            await allowed.final()
            assert allowed.text == "admin ok"
        in_dm = await emu.slash("probe_admin", user=emu.admin, channel=emu.dm(emu.admin))
        await in_dm.final()
        assert "only works in a server" in in_dm.text


async def test_an_exhausted_budget_tells_the_user_when_to_retry(
    emu: DiscordEmulator, run_bot: BotRunner, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(user_budget=1, user_budget_window_s=30.0)
    async with run_bot(settings, cogs=[Probes]):
        first = await emu.slash("probe_budget")
        await first.final()
        assert first.text == "within budget"
        second = await emu.slash("probe_budget")
        await second.final()
        assert second.ephemeral
        assert "Try again in 30 s" in second.text or "Try again in 29 s" in second.text
        other_user = await emu.slash("probe_budget", user=emu.admin)  # per user
        await other_user.final()
        assert other_user.text == "within budget"


async def test_user_facing_error_is_shown_privately(
    emu: DiscordEmulator, probed: HFCordBot
) -> None:
    inter = await emu.slash("probe_fail", {"kind": "user"})
    await inter.final()
    visible = [m for m in inter.messages if not m.deleted]
    assert [m.content for m in visible] == ["That text is too long; keep it under 10 characters."]
    assert visible[0].ephemeral
    # The public "thinking…" placeholder was removed so the error stays private.
    assert inter.original is not None and inter.original.deleted


async def test_unexpected_error_gets_an_error_id_and_is_logged(
    emu: DiscordEmulator, probed: HFCordBot, caplog: pytest.LogCaptureFixture
) -> None:
    inter = await emu.slash("probe_fail", {"kind": "crash"})
    await inter.final()
    (message,) = [m for m in inter.messages if not m.deleted]
    assert message.ephemeral and "error id `" in message.content
    error_id = message.content.split("`")[1]
    assert any(error_id in r.getMessage() and r.exc_info for r in caplog.records)
    assert "a bug in a cog" not in message.content  # no internals shown to users


async def test_commands_hidden_by_default_permissions_are_not_offered(
    emu: DiscordEmulator, hfcord: HFCordBot
) -> None:
    for command in emu.synced_commands:
        required = command.payload.get("default_member_permissions")
        if required is not None:
            with pytest.raises(CommandNotVisible):
                await emu.slash(command.name, user=emu.member)
