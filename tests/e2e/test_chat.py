"""Conversations end to end: /chat threads, mentions and reply chains, DMs, personas, limits.

The bot runs with its real cogs on the emulator and a tiny chat model (random weights, greedy);
a recording registry keeps every generation request, so the tests check what the model was
asked: the turns in order, with their roles and names.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.conversations.turns import bot_words
from bot.settings import DEFAULT_SYSTEM_PROMPT, Settings
from bot.sim import DiscordEmulator, SimMessage
from models.requests import ChatMessage
from tests.support.chat import (
    RecordingRegistry,
    answers,
    audit_actions,
    next_answer,
    recording_registry,
    thread_of,
)
from tests.support.e2e import BotRunner
from tests.support.waiting import wait_until


@pytest.fixture
def chat_settings(make_settings: Callable[..., Settings], tiny_chat_gpt2_dir: Path) -> Settings:
    return make_settings(
        generation_model=str(tiny_chat_gpt2_dir), max_new_tokens=8, chat_temperature=0.0
    )


@pytest.fixture
async def registry(chat_settings: Settings) -> AsyncIterator[RecordingRegistry]:
    registry = recording_registry(chat_settings)
    yield registry
    await registry.close()


def roles(messages: tuple[ChatMessage, ...]) -> list[str]:
    return [m.role for m in messages]


async def test_a_three_turn_chat_holds_the_earlier_turns_in_order(
    emu: DiscordEmulator, run_bot: BotRunner, chat_settings: Settings, registry: RecordingRegistry
) -> None:
    async with run_bot(chat_settings, registry=registry):
        opened = await emu.slash("chat", {"message": "My name is Ada."})
        await opened.final(timeout=60)
        assert opened.original is not None and "started a chat" in opened.original.content
        thread = thread_of(opened.original)
        assert thread.name == "My name is Ada." and thread.parent_id == emu.channel.id
        first = await next_answer(emu, thread)

        mention = await emu.post_message(thread, emu.member, f"{emu.bot_user.mention} I like owls.")
        second = await next_answer(emu, thread, mention)

        again = await emu.slash("chat", {"message": "What is my name?"}, channel=thread)
        await again.final(timeout=60)
        assert again.original is not None and "What is my name?" in again.original.content
        await next_answer(emu, thread, second)

    assert len(registry.requests) == 3
    asked = registry.requests[-1].messages
    assert roles(asked) == ["system", "user", "assistant", "user", "assistant", "user"]
    assert asked[0].content == DEFAULT_SYSTEM_PROMPT
    assert asked[1].content == "Member: My name is Ada."
    assert asked[2].content == registry.answers[0].strip()
    assert asked[3].content == "Member: I like owls."
    assert asked[4].content == registry.answers[1].strip()
    assert asked[5].content == "Member: What is my name?"
    # What the thread shows is what the model wrote (read back without the footer).
    assert bot_words(first.content) == registry.answers[0].strip()
    assert "8 tokens" in first.content and "tiny-chat-gpt2" in first.content
    assert [m.id for m in answers(emu, thread)][:2] == [first.id, second.id]


async def test_a_long_history_is_trimmed_from_the_oldest_message(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    make_settings: Callable[..., Settings],
    tiny_chat_gpt2_dir: Path,
) -> None:
    settings = make_settings(
        generation_model=str(tiny_chat_gpt2_dir),
        max_new_tokens=8,
        chat_temperature=0.0,
        chat_max_messages=60,
    )
    registry = recording_registry(settings)
    try:
        async with run_bot(settings, registry=registry) as bot:
            opened = await emu.slash("chat", {"message": "Let us talk about birds."})
            await opened.final(timeout=60)
            thread = thread_of(opened.original)
            await next_answer(emu, thread)
            # Without the intent plain messages are not answered, but the portal lets the bot
            # read them back: 30 long ones are far more than the 1024-token window holds.
            for n in range(30):
                await emu.post_message(
                    thread,
                    emu.member,
                    f"Note {n:02d}: " + "owls hunt at night and sleep by day " * 6,
                )
            mention = await emu.post_message(thread, emu.member, f"{emu.bot_user.mention} Summary?")
            answer = await next_answer(emu, thread, mention)
            counter = await registry.prompt_counter(emu.guild.id)
        asked = registry.requests[-1]
        budget = counter.window.prompt_budget(bot.settings.max_new_tokens)
        assert budget is not None and await counter.count(asked) <= budget
        kept = asked.messages[-1].content.splitlines()  # the people's turns after the last answer
        assert kept[-1] == "Member: Summary?"
        assert not kept[0].startswith("Member: Note 00")  # the oldest went first
        assert kept[0].startswith("Member: Note")
        assert "Let us talk about birds." not in str(asked.messages)
        assert roles(asked.messages)[:2] == ["system", "user"]  # starts with a person's turn
        assert "earlier messages left out to fit the model" in answer.content
    finally:
        await registry.close()


async def test_personas_set_inherited_and_overridden_per_chat(
    emu: DiscordEmulator, run_bot: BotRunner, chat_settings: Settings, registry: RecordingRegistry
) -> None:
    async with run_bot(chat_settings, registry=registry):
        refused = await emu.slash("persona set", {"text": "You are a pirate."}, user=emu.member)
        await refused.final()
        assert refused.ephemeral and "Manage Channels" in refused.text

        set_ = await emu.slash("persona set", {"text": "You are a pirate."}, user=emu.admin)
        await set_.final()
        assert "Persona set" in set_.text and "pirate" in set_.text

        inherited = await emu.slash("chat", {"message": "Ahoy?"})
        await inherited.final(timeout=60)
        pirate_thread = thread_of(inherited.original)
        await next_answer(emu, pirate_thread)
        assert registry.requests[-1].messages[0] == ChatMessage("system", "You are a pirate.")
        shown = await emu.slash("persona show", channel=pirate_thread)
        await shown.final()
        assert shown.ephemeral and "inherited from the parent channel" in shown.text

        overridden = await emu.slash("chat", {"message": "Hello", "persona": "You are a poet."})
        await overridden.final(timeout=60)
        poet_thread = thread_of(overridden.original)
        first = await next_answer(emu, poet_thread)
        assert registry.requests[-1].messages[0] == ChatMessage("system", "You are a poet.")
        later = await emu.post_message(poet_thread, emu.member, f"{emu.bot_user.mention} More.")
        await next_answer(emu, poet_thread, later)
        assert registry.requests[-1].messages[0] == ChatMessage("system", "You are a poet.")
        assert first.id < later.id

        cleared = await emu.slash("persona clear", user=emu.admin)
        await cleared.final()
        assert "the bot's default" in cleared.text
        plain_chat = await emu.slash("chat", {"message": "And now?"})
        await plain_chat.final(timeout=60)
        await next_answer(emu, thread_of(plain_chat.original))
        assert registry.requests[-1].messages[0].content == DEFAULT_SYSTEM_PROMPT
    actions = await audit_actions(chat_settings)
    assert [a for a in actions if a.startswith("persona.")] == ["persona.set", "persona.clear"]


async def test_stop_ends_a_chat_answer_and_is_for_the_asker(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    make_settings: Callable[..., Settings],
    tiny_chat_gpt2_dir: Path,
) -> None:
    settings = make_settings(generation_model=str(tiny_chat_gpt2_dir), max_new_tokens=900)
    async with run_bot(settings):
        opened = await emu.slash("chat", {"message": "Tell me a long story."})
        # The command's handler runs until the answer ends: wait for the thread only.
        await wait_until(
            lambda: opened.original is not None and opened.original.thread is not None,
            what="the chat's thread",
        )
        thread = thread_of(opened.original)
        await wait_until(
            lambda: any(m.buttons for m in thread.messages), timeout=30, what="the Stop button"
        )
        streaming = next(m for m in thread.messages if m.buttons)
        stranger = emu.add_user("stranger", guilds=[emu.guild])
        refused = await emu.click(streaming, label="Stop", user=stranger)
        await refused.final()
        assert refused.original is not None and refused.original.ephemeral
        stop = await emu.click(streaming, label="Stop", user=emu.member)
        await stop.final()
        answer = await next_answer(emu, thread)
        await opened.final(timeout=60)
        assert "stopped" in answer.content and answer.buttons == []
        assert "900 tokens" not in answer.content


async def test_a_reply_chain_outside_a_thread_is_the_conversation(
    emu: DiscordEmulator, run_bot: BotRunner, chat_settings: Settings, registry: RecordingRegistry
) -> None:
    async with run_bot(chat_settings, registry=registry):
        await emu.post_message(emu.channel, emu.member, "something unrelated")
        mention = await emu.post_message(
            emu.channel, emu.member, f"{emu.bot_user.mention} Hello, I'm Ada."
        )
        first = await next_answer(emu, emu.channel, mention)
        assert first.reference_id == mention.id  # answers as a reply, without a ping
        assert f"replied_user:{emu.member.id}" not in first.mentions
        await emu.post_message(emu.channel, emu.admin, "noise in between")
        follow = await emu.post_message(emu.channel, emu.member, "What's my name?", reply_to=first)
        second = await next_answer(emu, emu.channel, follow)
        third_ask = await emu.post_message(emu.channel, emu.admin, "And mine?", reply_to=second)
        await next_answer(emu, emu.channel, third_ask)

    asked = registry.requests[-1].messages
    assert roles(asked) == ["system", "user", "assistant", "user", "assistant", "user"]
    assert asked[1].content == "Member: Hello, I'm Ada."
    assert asked[2].content == registry.answers[0].strip()
    assert asked[3].content == "Member: What's my name?"
    assert asked[5].content == "Admin: And mine?"
    assert "unrelated" not in str(asked) and "noise" not in str(asked)


async def test_direct_messages_when_allowed_and_a_note_when_not(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    make_settings: Callable[..., Settings],
    tiny_chat_gpt2_dir: Path,
) -> None:
    settings = make_settings(
        generation_model=str(tiny_chat_gpt2_dir),
        max_new_tokens=8,
        chat_temperature=0.0,
        allow_dms=True,
    )
    registry = recording_registry(settings)
    dm = emu.dm(emu.member)
    try:
        async with run_bot(settings, registry=registry):
            hello = await emu.post_message(dm, emu.member, "hello in private")
            await next_answer(emu, dm, hello)
            again = await emu.post_message(dm, emu.member, "and again")
            await next_answer(emu, dm, again)
        asked = registry.requests[-1].messages
        assert roles(asked) == ["system", "user", "assistant", "user"]
        assert asked[1].content == "Member: hello in private"
        assert asked[3].content == "Member: and again"

        closed = dm.messages[-1]
        async with run_bot(settings.model_copy(update={"allow_dms": False}), registry=registry):
            await emu.post_message(dm, emu.member, "anyone there?")
            second = await emu.post_message(dm, emu.member, "hello?")
            await wait_until(
                lambda: (
                    any("direct messages" in m.content for m in dm.messages)
                    and bool(second.reactions)
                ),
                what="the note that DMs are off, then a reaction",
            )
            asked_more = await emu.post_message(
                emu.channel, emu.member, emu.bot_user.mention + " hi"
            )
            await next_answer(emu, emu.channel, asked_more)  # the bot was still listening
        notes = [m for m in dm.messages if m.id > closed.id and m.author is emu.bot_user]
        assert len(notes) == 1 and "turned them off" in notes[0].content
        assert len(registry.requests) == 3  # the two DMs and the mention: no DM generated
    finally:
        await registry.close()


async def test_a_chat_goes_on_after_a_restart(
    emu: DiscordEmulator, run_bot: BotRunner, chat_settings: Settings, registry: RecordingRegistry
) -> None:
    async with run_bot(chat_settings, registry=registry):
        opened = await emu.slash("chat", {"message": "Remember: blue.", "persona": "Be a parrot."})
        await opened.final(timeout=60)
        thread = thread_of(opened.original)
        first = await next_answer(emu, thread)
    async with run_bot(chat_settings, registry=registry):
        ask = await emu.post_message(thread, emu.member, f"{emu.bot_user.mention} Which colour?")
        await next_answer(emu, thread, ask)
    assert emu.hub.identify_count == 2
    asked = registry.requests[-1].messages
    assert [m.role for m in asked] == ["system", "user", "assistant", "user"]
    assert asked[0].content == "Be a parrot."
    assert asked[1].content == "Member: Remember: blue."
    assert asked[2].content == bot_words(first.content)
    assert asked[3].content == "Member: Which colour?"


async def test_a_busy_server_is_told_once_then_shown_a_reaction(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    make_settings: Callable[..., Settings],
    tiny_chat_gpt2_dir: Path,
) -> None:
    settings = make_settings(
        generation_model=str(tiny_chat_gpt2_dir),
        max_new_tokens=900,
        user_budget=5,
        user_budget_window_s=600,
        chat_max_active_per_server=1,
    )
    async with run_bot(settings) as bot:
        opened = await emu.slash("chat", {"message": "A long answer, please."}, user=emu.admin)
        await wait_until(
            lambda: (
                opened.original is not None
                and opened.original.thread is not None
                and any(m.buttons for m in opened.original.thread.messages)
            ),
            what="the first chat streaming",
        )
        busy = await emu.post_message(emu.channel, emu.member, f"{emu.bot_user.mention} hi")
        note = await _reply_to(emu, busy)
        assert "already has 1 conversation being answered" in note.content
        again = await emu.post_message(emu.channel, emu.member, f"{emu.bot_user.mention} hi?")
        await wait_until(lambda: bool(again.reactions), what="a reaction instead of a note")
        assert again.reactions == {"⏳": [emu.bot_user.id]}
        assert not any(m.reference_id == again.id for m in emu.channel.messages)
        assert bot.usage.remaining(emu.member.id) == 5  # refusals cost nothing
        streaming = next(m for m in thread_of(opened.original).messages if m.buttons)
        await (await emu.click(streaming, label="Stop", user=emu.admin)).final()
        await opened.final(timeout=60)
        # The notes are the bot's, not conversation: a reply to one reads as the person's turn.
        later = await emu.post_message(emu.channel, emu.member, "now?", reply_to=note)
        await next_answer(emu, emu.channel, later, timeout=120)
        first_part = await _reply_to(emu, later)
        assert first_part.author is emu.bot_user and "already has" not in first_part.content


async def test_over_the_budget_is_told_once_then_shown_a_reaction(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    make_settings: Callable[..., Settings],
    tiny_chat_gpt2_dir: Path,
) -> None:
    settings = make_settings(
        generation_model=str(tiny_chat_gpt2_dir),
        max_new_tokens=8,
        user_budget=1,
        user_budget_window_s=600,
    )
    registry = recording_registry(settings)
    try:
        async with run_bot(settings, registry=registry):
            first = await emu.post_message(emu.channel, emu.member, f"{emu.bot_user.mention} hi")
            await next_answer(emu, emu.channel, first)
            second = await emu.post_message(emu.channel, emu.member, f"{emu.bot_user.mention} hi")
            note = await _reply_to(emu, second)
            assert "going a little fast" in note.content
            third = await emu.post_message(emu.channel, emu.member, f"{emu.bot_user.mention} hi")
            await wait_until(lambda: bool(third.reactions), what="a reaction instead of a note")
        assert len(registry.requests) == 1
    finally:
        await registry.close()


async def _reply_to(emu: DiscordEmulator, message: SimMessage) -> SimMessage:
    """The bot's reply to ``message`` (a note), once posted."""
    channel = message.channel

    def found() -> list[SimMessage]:
        return [m for m in channel.messages if m.reference_id == message.id]

    await wait_until(lambda: bool(found()), what=f"the bot's reply to {message.id}")
    return found()[0]


async def test_attachments_are_read_or_named_and_chats_live_in_text_channels(
    emu: DiscordEmulator, run_bot: BotRunner, chat_settings: Settings, registry: RecordingRegistry
) -> None:
    async with run_bot(chat_settings, registry=registry):
        notes = emu.attachment("notes.txt", "Owls can turn their heads 270 degrees.")
        picture = emu.attachment("owl.png", b"\x89PNG\r\n\x1a\n" + bytes(16))
        asked = await emu.post_message(
            emu.channel,
            emu.member,
            f"{emu.bot_user.mention} Look at these",
            attachments=[notes, picture],
        )
        answer = await next_answer(emu, emu.channel, asked)
        assert "not read: owl.png" in answer.content

        refused = await emu.slash("chat", {"message": "Here?"}, channel=emu.thread)
        await refused.final()
        assert refused.ephemeral and "isn't a chat" in refused.text
    (only,) = registry.requests
    turn = only.messages[-1].content
    assert turn.startswith("Member: Look at these\n[notes.txt]\nOwls can turn their heads")
    assert turn.endswith("[attachments not read: owl.png]")


async def test_closing_mid_answer_ends_the_reply_before_the_connection_closes(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    make_settings: Callable[..., Settings],
    tiny_chat_gpt2_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    settings = make_settings(generation_model=str(tiny_chat_gpt2_dir), max_new_tokens=900)
    async with run_bot(settings) as bot:
        asked = await emu.post_message(emu.channel, emu.member, f"{emu.bot_user.mention} Talk.")
        await wait_until(
            lambda: any(
                m.reference_id == asked.id and m.buttons and "…" not in m.content
                for m in emu.channel.messages
            ),
            timeout=60,
            what="the answer streaming",
        )
        await bot.close()  # what SIGTERM does
    answer = next(m for m in emu.channel.messages if m.reference_id == asked.id)
    parts = [m for m in emu.channel.messages if m.author is emu.bot_user]
    assert all(m.buttons == [] for m in parts), "a Stop button outlived the bot"
    assert "stopped" in parts[-1].content and answer in parts
    problems = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert problems == [], [r.getMessage() for r in problems]
