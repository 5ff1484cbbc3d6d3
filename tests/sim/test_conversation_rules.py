"""The emulator's messages, replies, threads, DMs and the Message Content rule, against an
unmodified discord.py client, as conversations on Discord need them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import discord
import pytest

from bot.sim import DiscordEmulator
from bot.sim.harness import connected
from bot.sim.state import INTENT_MESSAGE_CONTENT, PRIVILEGED_INTENTS
from tests.support.barebot import BareBot
from tests.support.waiting import wait_until

WITHOUT_CONTENT = PRIVILEGED_INTENTS & ~INTENT_MESSAGE_CONTENT


async def _seen(bot: BareBot, message_id: int) -> discord.Message:
    await wait_until(
        lambda: any(m.id == message_id for m in bot.seen_messages),
        what=f"MESSAGE_CREATE for {message_id}",
    )
    return next(m for m in bot.seen_messages if m.id == message_id)


def _text_channel(bot: BareBot, channel_id: int) -> discord.TextChannel:
    channel = bot.get_channel(channel_id)
    assert isinstance(channel, discord.TextChannel)
    return channel


async def test_a_reply_carries_its_reference_and_pings_unless_turned_off(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    sent = await _text_channel(bare_bot, emu.channel.id).send("hello from the bot")
    parent = emu.state.messages[sent.id]

    pinged = await emu.post_message(emu.channel, emu.member, "thanks", reply_to=parent)
    received = await _seen(bare_bot, pinged.id)
    assert received.type is discord.MessageType.reply
    assert received.reference is not None and received.reference.message_id == sent.id
    resolved = received.reference.resolved
    assert isinstance(resolved, discord.Message) and resolved.content == "hello from the bot"
    # The reply pings the bot, so it counts as mentioning it: content shown without the intent.
    assert received.content == "thanks"
    assert [u.id for u in received.mentions] == [emu.bot_user.id]

    quiet = await emu.post_message(
        emu.channel, emu.member, "no ping", reply_to=parent, mention_author=False
    )
    received = await _seen(bare_bot, quiet.id)
    assert received.content == "" and received.mentions == []
    assert received.reference is not None and received.reference.message_id == sent.id


async def test_message_content_rule_in_events(emu: DiscordEmulator, bare_bot: BareBot) -> None:
    plain = await emu.post_message(emu.channel, emu.member, "just chatting")
    mention = await emu.post_message(
        emu.channel, emu.member, f"{emu.bot_user.mention} are you there?"
    )
    in_thread = await emu.post_message(emu.thread, emu.member, "in a thread, no mention")
    direct = await emu.post_message(emu.dm(emu.member), emu.member, "a direct message")
    assert (await _seen(bare_bot, plain.id)).content == ""
    assert (await _seen(bare_bot, mention.id)).content.endswith("are you there?")
    assert (await _seen(bare_bot, in_thread.id)).content == ""
    dm = await _seen(bare_bot, direct.id)
    assert dm.content == "a direct message" and dm.guild is None
    assert isinstance(dm.channel, discord.DMChannel)
    answer = await dm.channel.send("hi in private")
    assert emu.state.messages[answer.id].channel is emu.dm(emu.member)


@pytest.fixture
async def emu_without_content() -> AsyncIterator[DiscordEmulator]:
    """An app whose Message Content intent is off in the Developer Portal."""
    async with DiscordEmulator(quiet_s=0.1, privileged_intents=WITHOUT_CONTENT) as emulator:
        with emulator.patch_discord():
            yield emulator


async def test_fetches_show_content_when_the_portal_gives_the_intent(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    # The default emulator's app has the intent in the portal: REST shows content even to a
    # session that did not ask for it over the gateway.
    plain = await emu.post_message(emu.channel, emu.member, "readable by REST")
    channel = _text_channel(bare_bot, emu.channel.id)
    assert (await channel.fetch_message(plain.id)).content == "readable by REST"
    assert (await _seen(bare_bot, plain.id)).content == ""


async def test_fetches_hide_content_unless_the_portal_gives_the_intent(
    emu_without_content: DiscordEmulator,
) -> None:
    emu = emu_without_content
    bot = BareBot(emu.guild.id)
    async with connected(emu, bot):
        channel = _text_channel(bot, emu.channel.id)
        plain = await emu.post_message(emu.channel, emu.member, "hidden everywhere")
        mention = await emu.post_message(emu.channel, emu.member, f"{emu.bot_user.mention} hi")
        mine = await channel.send("the bot's own words")
        assert (await channel.fetch_message(plain.id)).content == ""
        assert (await channel.fetch_message(mention.id)).content.endswith(" hi")
        history = [m async for m in channel.history(limit=10)]
        assert [m.id for m in history] == [mine.id, mention.id, plain.id]  # newest first
        assert [m.content for m in history] == [
            "the bot's own words",
            f"{emu.bot_user.mention} hi",
            "",
        ]
        older = [m.id async for m in channel.history(limit=10, before=discord.Object(mention.id))]
        assert older == [plain.id]
        # A context menu's target is always shown in full.
        inter = await emu.context_menu("Count words", emu.state.messages[plain.id])
        await inter.final()
        assert inter.original is not None and inter.original.content == "2 words"


async def test_identifying_with_a_privilege_the_portal_refuses_closes_with_4014(
    emu_without_content: DiscordEmulator,
) -> None:
    intents = discord.Intents.default()
    intents.message_content = True
    bot = BareBot(emu_without_content.guild.id, intents=intents)
    with pytest.raises(discord.PrivilegedIntentsRequired):
        async with connected(emu_without_content, bot, ready_timeout=10):
            pass


async def test_threads_start_from_a_message_once_and_arrive_by_thread_create(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    channel = _text_channel(bare_bot, emu.channel.id)
    starter = await channel.send("let's talk")
    thread = await starter.create_thread(name="A chat", auto_archive_duration=60)
    assert thread.id == starter.id and thread.parent_id == emu.channel.id
    assert thread.type is discord.ChannelType.public_thread
    sim_thread = emu.state.channels[thread.id]
    assert sim_thread.name == "A chat" and sim_thread.auto_archive_duration == 60
    assert emu.state.messages[starter.id].thread is sim_thread
    guild = bare_bot.get_guild(emu.guild.id)
    assert guild is not None
    await wait_until(lambda: guild.get_thread(thread.id) is not None, what="THREAD_CREATE")
    fetched = await channel.fetch_message(starter.id)
    assert fetched.flags.has_thread

    with pytest.raises(discord.HTTPException) as again:
        await starter.create_thread(name="twice")
    assert again.value.code == 160004
    with pytest.raises(discord.HTTPException) as too_long:
        await (await channel.send("another")).create_thread(name="x" * 101)
    assert too_long.value.code == 50035
    in_thread = await thread.send("a message in the thread")
    with pytest.raises(discord.HTTPException) as nested:
        await in_thread.create_thread(name="nested")
    assert nested.value.code == 50024

    said = await emu.post_message(sim_thread, emu.member, "and a user answers")
    assert (await _seen(bare_bot, said.id)).channel.id == thread.id
    assert [m.id async for m in thread.history(limit=5)] == [said.id, in_thread.id]


async def test_threads_without_a_message_are_private_unless_asked_public(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    channel = _text_channel(bare_bot, emu.channel.id)
    private = await channel.create_thread(name="private by default")
    assert private.type is discord.ChannelType.private_thread
    public = await channel.create_thread(name="open to all", type=discord.ChannelType.public_thread)
    assert public.type is discord.ChannelType.public_thread
    assert emu.state.channels[public.id].parent_id == emu.channel.id
    assert public.id not in emu.state.messages  # no starter message


async def test_users_start_threads_the_bot_hears_of(
    emu: DiscordEmulator, bare_bot: BareBot
) -> None:
    created: list[discord.Thread] = []

    async def on_thread_create(thread: discord.Thread) -> None:
        created.append(thread)

    bare_bot.add_listener(on_thread_create)
    said = await emu.post_message(emu.channel, emu.member, "a topic")
    thread = await emu.start_thread(emu.channel, "Topic", user=emu.member, message=said)
    await wait_until(lambda: [t.id for t in created] == [thread.id], what="on_thread_create")
    assert thread.id == said.id and thread.owner_id == emu.member.id


async def test_reactions_are_recorded(emu: DiscordEmulator, bare_bot: BareBot) -> None:
    said = await emu.post_message(emu.channel, emu.member, "slow down")
    message = await _text_channel(bare_bot, emu.channel.id).fetch_message(said.id)
    await message.add_reaction("⏳")
    await message.add_reaction("⏳")
    assert said.reactions == {"⏳": [emu.bot_user.id]}
