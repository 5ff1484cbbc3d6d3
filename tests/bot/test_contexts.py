from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.contexts import ContextStore, ContextTooLong
from bot.errors import UserFacingError
from bot.store import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "db.sqlite3")
    yield store
    await store.close()


async def test_set_get_append_clear(store: Store) -> None:
    contexts = ContextStore(store, max_chars=1000)
    assert await contexts.get(1) is None
    first = await contexts.set(
        channel_id=1, guild_id=9, body="  Paris is in France. ", source="text", author_id=5
    )
    assert (first.body, first.author_id, first.source) == ("Paris is in France.", 5, "text")
    appended = (
        await contexts.append(
            channel_id=1, guild_id=9, body="Rome is in Italy.", source="text", author_id=6
        )
    ).context
    assert appended.body == "Paris is in France.\n\nRome is in Italy."
    assert appended.author_id == 5 and appended.updated_by == 6
    assert appended.created_at == first.created_at
    assert await contexts.get(2) is None  # other channels are untouched
    cleared = await contexts.clear(1, user_id=5, may_manage=False)
    assert cleared.body == appended.body
    assert await contexts.get(1) is None
    with pytest.raises(UserFacingError, match="no context of its own"):
        await contexts.clear(1, user_id=5, may_manage=False)


async def test_clear_is_for_the_author_or_managers_and_is_audited(store: Store) -> None:
    contexts = ContextStore(store, max_chars=1000)
    await contexts.set(channel_id=1, guild_id=9, body="text", source="text", author_id=5)
    with pytest.raises(UserFacingError, match="who set this context"):
        await contexts.clear(1, user_id=6, may_manage=False)
    assert await contexts.get(1) is not None
    await contexts.clear(1, user_id=6, may_manage=True)
    assert await contexts.get(1) is None
    [entry] = await store.recent_audit(9)
    assert (entry.action, entry.user_id) == ("context.clear", 6)
    assert "set by 5" in entry.detail


async def test_only_the_author_or_a_manager_replaces_a_context(store: Store) -> None:
    contexts = ContextStore(store, max_chars=1000)
    await contexts.set(channel_id=1, guild_id=9, body="mine", source="text", author_id=5)
    with pytest.raises(UserFacingError, match="only they or members with the Manage Messages"):
        await contexts.set(channel_id=1, guild_id=9, body="theirs", source="text", author_id=6)
    kept = await contexts.get(1)
    assert kept is not None and kept.body == "mine"
    await contexts.set(channel_id=1, guild_id=9, body="again", source="text", author_id=5)
    managed = await contexts.set(
        channel_id=1, guild_id=9, body="theirs", source="text", author_id=6, may_manage=True
    )
    assert (managed.body, managed.author_id) == ("theirs", 6)


async def test_appending_in_an_inheriting_thread_copies_the_parent(store: Store) -> None:
    contexts = ContextStore(store, max_chars=1000)
    await contexts.set(channel_id=1, guild_id=9, body="parent", source="text", author_id=5)
    first = await contexts.append(
        channel_id=2, guild_id=9, body="more", source="text", author_id=6, parent_id=1
    )
    assert first.copied_parent and first.context.body == "parent\n\nmore"
    second = await contexts.append(
        channel_id=2, guild_id=9, body="again", source="text", author_id=6, parent_id=1
    )
    assert not second.copied_parent and second.context.body == "parent\n\nmore\n\nagain"
    parent = await contexts.get(1)
    assert parent is not None and parent.body == "parent"


async def test_a_thread_falls_back_to_its_parent(store: Store) -> None:
    contexts = ContextStore(store, max_chars=1000)
    assert await contexts.effective(2, parent_id=1) == (None, False)
    parent = await contexts.set(channel_id=1, guild_id=9, body="p", source="text", author_id=5)
    assert await contexts.effective(2, parent_id=1) == (parent, True)
    assert await contexts.effective(2) == (None, False)  # not a thread: no fallback
    own = await contexts.set(channel_id=2, guild_id=9, body="t", source="text", author_id=5)
    assert await contexts.effective(2, parent_id=1) == (own, False)


async def test_set_replaces_and_takes_authorship(store: Store) -> None:
    contexts = ContextStore(store, max_chars=1000)
    await contexts.set(channel_id=1, guild_id=None, body="old", source="text", author_id=5)
    new = await contexts.set(
        channel_id=1,
        guild_id=None,
        body="new",
        source="file notes.md",
        author_id=7,
        may_manage=True,
    )
    assert (new.body, new.author_id, new.source) == ("new", 7, "file notes.md")


async def test_limits_and_empty_text_lose_nothing(store: Store) -> None:
    contexts = ContextStore(store, max_chars=30)
    await contexts.set(channel_id=1, guild_id=None, body="x" * 20, source="text", author_id=5)
    with pytest.raises(ContextTooLong, match="limit is 30"):
        await contexts.append(
            channel_id=1, guild_id=None, body="y" * 20, source="text", author_id=5
        )
    with pytest.raises(ContextTooLong):
        await contexts.set(channel_id=1, guild_id=None, body="z" * 31, source="text", author_id=5)
    with pytest.raises(UserFacingError):
        await contexts.set(channel_id=1, guild_id=None, body="   ", source="text", author_id=5)
    kept = await contexts.get(1)
    assert kept is not None and kept.body == "x" * 20


async def test_contexts_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = await Store.open(path)
    await ContextStore(store, max_chars=100).set(
        channel_id=3, guild_id=1, body="kept", source="text", author_id=1
    )
    await store.close()
    store = await Store.open(path)
    try:
        context = await ContextStore(store, max_chars=100).get(3)
        assert context is not None and context.body == "kept"
    finally:
        await store.close()
