"""Conversations with and without Discord's Message Content intent.

Here the emulated app's Developer Portal has the intent off unless a test switches it on
(``emu`` is parametrized), as for most bots: then the bot sees only messages that mention it,
replies that ping it and DMs, in events and in fetched history alike.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import discord
import pytest

from bot.client import INTENT_REFUSED
from bot.settings import Settings
from bot.sim import DiscordEmulator
from bot.sim.state import INTENT_MESSAGE_CONTENT, PRIVILEGED_INTENTS
from tests.support.chat import answers, next_answer, recording_registry, thread_of
from tests.support.e2e import BotRunner
from tests.support.waiting import wait_until

PORTAL_WITHOUT_CONTENT = PRIVILEGED_INTENTS & ~INTENT_MESSAGE_CONTENT


@pytest.fixture
async def emu(request: pytest.FixtureRequest) -> AsyncIterator[DiscordEmulator]:
    portal = getattr(request, "param", PORTAL_WITHOUT_CONTENT)
    async with DiscordEmulator(privileged_intents=portal) as emulator:
        with emulator.patch_discord():
            yield emulator


@pytest.fixture
def chat_settings(make_settings: Callable[..., Settings], tiny_chat_gpt2_dir: Path) -> Settings:
    return make_settings(
        generation_model=str(tiny_chat_gpt2_dir), max_new_tokens=8, chat_temperature=0.0
    )


async def test_without_the_intent_only_mentions_and_pinging_replies_are_answered(
    emu: DiscordEmulator, run_bot: BotRunner, chat_settings: Settings
) -> None:
    registry = recording_registry(chat_settings)
    try:
        async with run_bot(chat_settings, registry=registry):
            opened = await emu.slash("chat", {"message": "Hi there."})
            await opened.final(timeout=60)
            thread = thread_of(opened.original)
            first = await next_answer(emu, thread)
            await emu.post_message(thread, emu.member, "a plain message the bot cannot read")
            mention = await emu.post_message(
                thread, emu.member, f"{emu.bot_user.mention} what did I say?"
            )
            second = await next_answer(emu, thread, mention)
            # The plain message was neither answered nor readable in the history.
            assert answers(emu, thread) == [first, second]
            assert "1 message I can't read (no Message Content intent)" in second.content
            assert "cannot read" not in str(registry.requests[-1].messages)

            # A reply without its ping hides its content too: the bot says why, once.
            quiet = await emu.post_message(
                thread, emu.member, "no ping", reply_to=second, mention_author=False
            )
            await wait_until(
                lambda: any(m.reference_id == quiet.id for m in thread.messages),
                what="the note about the intent",
            )
            note = next(m for m in thread.messages if m.reference_id == quiet.id)
            assert "Message Content intent" in note.content
            pinged = await emu.post_message(thread, emu.member, "with ping", reply_to=second)
            third = await next_answer(emu, thread, pinged)
        assert len(registry.requests) == 3
        asked = registry.requests[-1].messages
        assert asked[-1].content == "Member: with ping"
        assert "Message Content intent" not in str(asked)  # notes are not conversation
        assert third.id > note.id
    finally:
        await registry.close()


@pytest.mark.parametrize("emu", [PRIVILEGED_INTENTS], indirect=True)
async def test_with_the_intent_every_message_in_a_chat_thread_is_answered(
    emu: DiscordEmulator, run_bot: BotRunner, chat_settings: Settings
) -> None:
    settings = chat_settings.model_copy(update={"message_content_intent": True})
    registry = recording_registry(settings)
    try:
        async with run_bot(settings, registry=registry):
            opened = await emu.slash("chat", {"message": "Hi there."})
            await opened.final(timeout=60)
            thread = thread_of(opened.original)
            await next_answer(emu, thread)
            plain = await emu.post_message(thread, emu.member, "no mention needed here")
            await next_answer(emu, thread, plain)
            assert registry.requests[-1].messages[-1].content == "Member: no mention needed here"

            # Outside chat threads the intent changes nothing: only mentions are answered.
            elsewhere = await emu.post_message(emu.channel, emu.member, "just talking")
            mention = await emu.post_message(emu.channel, emu.member, f"{emu.bot_user.mention} hey")
            await next_answer(emu, emu.channel, mention)
            assert not any(m.reference_id == elsewhere.id for m in emu.channel.messages)
        assert len(registry.requests) == 3
    finally:
        await registry.close()


async def test_asking_for_an_intent_the_portal_refuses_is_one_clear_log_line(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    chat_settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = chat_settings.model_copy(update={"message_content_intent": True})
    with caplog.at_level(logging.ERROR), pytest.raises(discord.PrivilegedIntentsRequired):
        async with run_bot(settings):
            pass
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [INTENT_REFUSED]
    assert errors[0].exc_info is None  # a sentence, not a traceback
