"""The emulator against an unmodified discord.py client: each Discord behaviour it promises."""

from __future__ import annotations

import time

import aiohttp
import discord
import pytest
from discord.http import Route

from bot.sim import (
    CommandNotFound,
    CommandNotVisible,
    ComponentError,
    DiscordEmulator,
    InteractionFailed,
    OptionError,
)
from bot.sim.harness import connected
from tests.support.barebot import BareBot
from tests.support.waiting import wait_until


async def test_login_streams_both_guilds_with_channels_threads_and_roles(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    assert bare_bot.user is not None and bare_bot.user.id == emu.bot_user.id
    assert {g.id for g in bare_bot.guilds} == {emu.guild.id, emu.other_guild.id}
    guild = bare_bot.get_guild(emu.guild.id)
    assert guild is not None
    assert guild.get_channel(emu.channel.id) is not None
    thread = guild.get_thread(emu.thread.id)
    assert thread is not None and thread.parent_id == emu.channel.id
    assert guild.get_role(emu.admin_role.id) is not None
    assert guild.owner_id == emu.admin.id
    assert emu.hub.identify_count == 1 and emu.hub.heartbeats >= 1
    assert emu.unhandled_requests == []
    assert all(r.ok for r in emu.requests), [r for r in emu.requests if not r.ok]


async def test_command_sync_keeps_ids_and_scopes_guild_commands(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    names = {c.name for c in emu.synced_commands}
    assert {"echo", "slow", "context", "Count words", "guildonly"} <= names
    guildonly = emu.command("guildonly", guild=emu.guild)
    assert guildonly.guild_id == emu.guild.id
    with pytest.raises(CommandNotFound):
        emu.command("guildonly", guild=emu.other_guild)
    echo_id = emu.command("echo").id
    await bare_bot.tree.sync()
    assert emu.command("echo").id == echo_id  # Discord keeps ids across a bulk overwrite


async def test_invalid_command_schema_is_rejected_with_discords_error(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    bad = [{"name": "Bad Name", "description": "", "type": 1}]
    with pytest.raises(discord.HTTPException) as info:
        await bare_bot.http.bulk_upsert_global_commands(emu.state.application_id, bad)
    assert info.value.status == 400 and info.value.code == 50035
    assert "Command name is invalid" in str(info.value)


async def test_slash_options_are_typed_and_validated_like_discords_client(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    inter = await emu.slash("echo", {"text": "hi", "times": "2"})
    await inter.final()
    assert inter.original is not None and inter.original.content == "hi hi"
    assert inter.payload["data"]["options"][1] == {"name": "times", "type": 4, "value": 2}
    with pytest.raises(OptionError, match="above the maximum"):
        await emu.slash("echo", {"text": "hi", "times": 5})
    with pytest.raises(OptionError, match="required"):
        await emu.slash("echo", {"times": 1})
    with pytest.raises(OptionError, match="no option 'colour'"):
        await emu.slash("echo", {"text": "a", "colour": "red"})


async def test_deferred_response_is_completed_by_the_first_followup(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    inter = await emu.slash("slow")
    await inter.final()
    assert inter.deferred and inter.response_type == 5
    assert inter.original is not None and not inter.original.loading
    assert inter.original.contents == ["", "done slowly"]
    assert [m.content for m in inter.followups] == ["and a second message"]
    assert inter.original in emu.channel.messages

    private = await emu.slash("slow", {"ephemeral": True})
    await private.final()
    assert private.original is not None and private.original.ephemeral
    assert private.original not in emu.channel.messages
    assert not private.followups[0].ephemeral  # later followups choose for themselves


async def test_unacknowledged_interaction_fails_after_three_seconds_and_late_reply_gets_10062(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    started = time.monotonic()
    inter = await emu.slash("late")
    with pytest.raises(InteractionFailed, match="did not acknowledge"):
        await inter.final(timeout=10)
    assert 2.9 <= time.monotonic() - started < 5
    bare_bot.release.set()
    await inter.wait_until(lambda i: bool(i.requests), timeout=5, require_ack=False)
    await wait_until(
        lambda: any(isinstance(e, discord.NotFound) for e in bare_bot.errors),
        what="the late reply's error to reach the bot",
    )
    late = [e for e in bare_bot.errors if isinstance(e, discord.NotFound)]
    assert late[0].code == 10062
    assert inter.requests[0].status == 404 and inter.requests[0].error_code == 10062


async def test_ack_deadline_follows_the_injected_clock(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    inter = await emu.slash("late")
    emu.advance(3.5)
    bare_bot.release.set()
    await inter.wait_until(lambda i: bool(i.requests), timeout=5, require_ack=False)
    assert inter.failed and inter.requests[0].error_code == 10062


async def test_content_over_2000_characters_is_rejected(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    inter = await emu.slash("long")
    await inter.final()
    error = next(e for e in bare_bot.errors if isinstance(e, discord.HTTPException))
    assert error.status == 400 and error.code == 50035
    assert "Must be 2000 or fewer in length." in str(error)
    assert inter.rejected[0].error_code == 50035
    assert inter.original is not None and len(inter.original.content) == 2000


async def test_mentions_are_resolved_per_allowed_mentions(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    safe = await emu.slash("echo", {"text": f"@everyone {emu.admin.mention}"})
    await safe.final()
    assert safe.original is not None and safe.original.mentions == frozenset()
    assert safe.original.current.allowed_mentions == {"parse": []}
    loud = await emu.slash("ping")
    await loud.final()
    assert loud.original is not None
    assert loud.original.mentions == {"everyone", f"user:{emu.member.id}"}
    assert [m for m, _ in emu.mention_leaks()] == [loud.original]


async def test_button_click_updates_the_message_and_disappears(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    inter = await emu.slash("buttons")
    await inter.final()
    assert inter.original is not None
    assert [b.custom_id for b in inter.original.buttons] == ["stop"]
    click = await emu.click(inter.original, label="Stop")
    await click.final()
    assert click.response_type == 7
    assert inter.original.content == "stopped" and inter.original.buttons == []
    assert bare_bot.views[0].clicked_by == [emu.member.id]
    with pytest.raises(ComponentError, match="no button stop"):
        await emu.click(inter.original, "stop")


async def test_attachment_option_is_downloadable_by_the_bot(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    file = emu.attachment("notes.txt", b"hello")
    inter = await emu.slash("upload", {"file": file})
    await inter.final()
    assert inter.original is not None and inter.original.content == "notes.txt:5:hello"
    assert (
        inter.payload["data"]["resolved"]["attachments"][str(file.id)]["content_type"]
        == "text/plain"
    )


async def test_files_in_followups_are_stored_as_attachments(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    inter = await emu.slash("picture")
    await inter.final()
    assert inter.original is not None
    (image,) = inter.original.attachments
    assert image.filename == "curve.png" and image.is_png and image.image_size == (1, 1)
    assert image.content_type == "image/png"
    assert inter.requests[-1].files[0].filename == "curve.png"


async def test_final_waits_for_the_handler_and_keeps_every_edit(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    seen: list[str] = []
    emu.add_listener(lambda event: seen.append(event.message.content))
    inter = await emu.slash("stream")
    await inter.final()
    assert inter.original is not None
    assert inter.original.contents == ["", "one", "one two", "one two three"]
    assert seen[-3:] == ["one", "one two", "one two three"]


async def test_channel_messages_edits_and_gateway_events(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    inter = await emu.slash("announce")
    await inter.final()
    assert inter.ephemeral
    posted = [m for m in emu.channel.messages if m.content.startswith("announcement")]
    assert len(posted) == 1 and posted[0].contents == ["announcement", "announcement (edited)"]

    def seen_by_the_bot() -> list[str]:
        return [m.content for m in bare_bot.seen_messages if m.id == posted[0].id]

    # MESSAGE_CREATE delivers the bot's own message; MESSAGE_UPDATE then updates the cached copy.
    await wait_until(
        lambda: seen_by_the_bot() == ["announcement (edited)"],
        what="MESSAGE_CREATE then MESSAGE_UPDATE for the bot's own message",
    )


async def test_message_context_menu_and_message_content_intent(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    target = await emu.post_message(emu.channel, emu.admin, "three little words")
    inter = await emu.context_menu("Count words", target, user=emu.member)
    await inter.final()
    assert inter.original is not None and inter.original.content == "3 words" and inter.ephemeral
    await wait_until(
        lambda: any(m.id == target.id for m in bare_bot.seen_messages),
        what="MESSAGE_CREATE for the user's message",
    )
    received = [m for m in bare_bot.seen_messages if m.id == target.id]
    assert received[0].content == ""  # no MESSAGE_CONTENT intent: Discord hides it


async def test_subcommands_and_missing_subcommand(emu: DiscordEmulator, bare_bot: BareBot) -> None:
    inter = await emu.slash("context set", {"text": "rules"})
    await inter.final()
    assert inter.original is not None and inter.original.content == "set:rules"
    assert inter.name == "/context set"
    with pytest.raises(CommandNotFound, match="needs a subcommand: set, show"):
        await emu.slash("context")


async def test_default_member_permissions_hide_commands_unless_overridden(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    with pytest.raises(CommandNotVisible):
        await emu.slash("secret", user=emu.member)
    ok = await emu.slash("secret", user=emu.admin)
    await ok.final()
    forced = await emu.slash("secret", user=emu.member, bypass_permissions=True)
    await forced.final()
    assert forced.original is not None and forced.original.content == "secret"


async def test_guild_commands_only_exist_in_their_guild(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    with pytest.raises(CommandNotFound):
        await emu.slash("guildonly", channel=emu.other_channel)
    inter = await emu.slash("guildonly", channel=emu.channel)
    await inter.final()
    assert inter.payload["data"]["guild_id"] == str(emu.guild.id)


async def test_interaction_token_expires_after_15_minutes(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    inter = await emu.slash("wait")
    await inter.acknowledged_within(3)
    emu.advance(15 * 60 + 1)
    bare_bot.release.set()
    await inter.wait_until(lambda i: len(i.requests) >= 2, timeout=5)
    error = next(e for e in bare_bot.errors if isinstance(e, discord.HTTPException))
    assert error.status == 401 and error.code == 50027


async def test_forced_429_is_retried_by_discord_py(emu: DiscordEmulator, bare_bot: BareBot) -> None:
    emu.force_rate_limit("POST /interactions/{interaction_id}/{token}/callback", retry_after=0.2)
    inter = await emu.slash("echo", {"text": "after a 429"})
    await inter.final()
    assert [r.status for r in inter.requests] == [429, 200]
    assert inter.original is not None and inter.original.content == "after a 429"


async def test_every_response_carries_rate_limit_headers_and_exact_json_type(
    emu: DiscordEmulator,
) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"{emu.api_base}/users/@me"
        async with session.get(url, headers={"Authorization": f"Bot {emu.token}"}) as ok:
            assert ok.status == 200
            assert ok.headers["Content-Type"] == "application/json"
            assert {
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset-After",
                "X-RateLimit-Bucket",
            } <= set(ok.headers)
        async with session.get(url, headers={"Authorization": "Bot wrong"}) as denied:
            assert denied.status == 401 and (await denied.json())["code"] == 0
            assert "X-RateLimit-Remaining" in denied.headers


async def test_reconnect_resumes_and_replays(emu: DiscordEmulator, bare_bot: BareBot) -> None:
    await emu.reconnect()
    await emu.wait_ready(10)
    assert emu.hub.resume_count == 1 and emu.hub.identify_count == 1
    inter = await emu.slash("echo", {"text": "still here"})
    await inter.final()
    assert inter.original is not None and inter.original.content == "still here"


async def test_commands_in_threads_answer_in_the_thread(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    inter = await emu.slash("echo", {"text": "threaded"}, channel=emu.thread)
    await inter.final()
    assert inter.original is not None and inter.original.channel is emu.thread
    assert inter.original in emu.thread.messages


async def test_unknown_routes_are_recorded(emu: DiscordEmulator, bare_bot: BareBot) -> None:
    with pytest.raises(discord.NotFound):
        await bare_bot.http.request(Route("GET", "/not-a-route"))
    assert [r.path for r in emu.unhandled_requests] == ["/api/v10/not-a-route"]


async def test_wrong_token_fails_login(emu: DiscordEmulator) -> None:
    client = discord.Client(intents=discord.Intents.default())
    with pytest.raises(discord.LoginFailure):
        await client.login("not-the-token")
    await client.close()


async def test_members_intent_gets_member_chunks(emu: DiscordEmulator) -> None:
    bot = BareBot(emu.guild.id, intents=discord.Intents.all())
    async with connected(emu, bot):
        guild = bot.get_guild(emu.guild.id)
        assert guild is not None and guild.chunked
        assert {m.id for m in guild.members} >= {emu.admin.id, emu.member.id, emu.bot_user.id}
        target = await emu.post_message(emu.channel, emu.member, "visible with the intent")
        await wait_until(
            lambda: any(m.id == target.id for m in bot.seen_messages),
            what="MESSAGE_CREATE for the user's message",
        )
        assert [m.content for m in bot.seen_messages if m.id == target.id] == [
            "visible with the intent"
        ]
