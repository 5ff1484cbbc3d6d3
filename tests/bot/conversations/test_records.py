"""Conversations' SQLite records: personas with inheritance, chats, prompts and notes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.conversations.records import ConversationRecords
from bot.store import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "db.sqlite3")
    yield store
    await store.close()


async def test_personas_own_inherited_and_default_and_audited(store: Store) -> None:
    records = ConversationRecords(store, default_persona="Default.")
    channel, thread, guild = 10, 11, 1
    assert (await records.effective_persona(thread, channel)).source == "default"
    await records.set_persona(channel_id=channel, guild_id=guild, text="Pirate.", user_id=5)
    inherited = await records.effective_persona(thread, channel)
    assert (inherited.text, inherited.source) == ("Pirate.", "parent")
    assert inherited.persona is not None and inherited.persona.set_by == 5
    await records.set_persona(channel_id=thread, guild_id=guild, text="Poet.", user_id=6)
    assert (await records.effective_persona(thread, channel)).text == "Poet."
    assert (await records.effective_persona(channel)).text == "Pirate."
    removed = await records.clear_persona(channel_id=thread, guild_id=guild, user_id=5)
    assert removed is not None and removed.text == "Poet."
    assert await records.clear_persona(channel_id=thread, guild_id=guild, user_id=5) is None
    assert (await records.effective_persona(thread, channel)).text == "Pirate."
    actions = [entry.action for entry in reversed(await store.recent_audit(guild))]
    assert actions == ["persona.set", "persona.set", "persona.clear"]


async def test_a_chat_keeps_its_starter_persona_and_model(store: Store) -> None:
    records = ConversationRecords(store, default_persona="Default.")
    started = await records.start(
        thread_id=100,
        guild_id=1,
        parent_id=10,
        starter_message_id=100,
        author_id=5,
        author_name="Ada",
        starter="Hello there",
        persona="Parrot.",
    )
    assert (started.starter, started.model) == ("Hello there", None)
    assert (await records.effective_persona(100, 10)).text == "Parrot."
    assert await records.answered_by(100, "tiny") is None
    assert await records.answered_by(100, "tiny") is None
    assert await records.answered_by(100, "bigger") == "tiny"
    again = await records.conversation(100)
    assert again is not None and again.model == "bigger"
    assert await records.conversation(101) is None
    starter = (await records.recorded([100]))[100]
    assert (starter.kind, starter.author_name, starter.content) == ("prompt", "Ada", "Hello there")


async def test_prompts_and_notes_are_found_by_message_id(store: Store) -> None:
    records = ConversationRecords(store, default_persona="Default.")
    await records.record_prompt(
        message_id=7, channel_id=100, author_id=5, author_name="Ada", content="More please"
    )
    await records.record_notes(message_ids=[8, 9], channel_id=100)
    found = await records.recorded([7, 8, 9, 10, 7])
    assert sorted(found) == [7, 8, 9]
    assert found[7].content == "More please" and found[8].kind == "note"
    many = await records.recorded(list(range(2000)))  # more ids than one query may bind
    assert sorted(many) == [7, 8, 9]
