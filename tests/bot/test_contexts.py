"""The documents service: notes and uploads per channel, the thread fallback, who may change
what (checked in the writing transaction), limits, the audit, and what /ask reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.contexts import ContextStore, ContextTooLong
from bot.errors import UserFacingError
from tests.support.documents import WordEmbedder, open_contexts


@pytest.fixture
async def contexts(tmp_path: Path) -> AsyncIterator[ContextStore]:
    async with open_contexts(tmp_path / "db.sqlite3", WordEmbedder(), max_chars=1000) as service:
        yield service


async def _body(contexts: ContextStore, channel_id: int, name: str = "notes") -> str | None:
    document = await contexts.index.document(channel_id, name)
    return document.body if document is not None else None


async def test_set_append_list_and_clear_notes(contexts: ContextStore) -> None:
    assert await contexts.library(1) is None
    first = await contexts.set_notes(
        channel_id=1, guild_id=9, text="  Paris is in France. ", author_id=5
    )
    assert (first.document.name, first.document.author_id, first.document.chars) == ("notes", 5, 19)
    appended = await contexts.append_notes(
        channel_id=1, guild_id=9, text="Rome is in Italy.", author_id=6
    )
    assert await _body(contexts, 1) == "Paris is in France.\n\nRome is in Italy."
    assert appended.document.author_id == 5 and appended.document.updated_by == 6
    assert appended.document.created_at == first.document.created_at
    assert await contexts.library(2) is None  # other channels are untouched
    cleared = await contexts.clear(1, user_id=5, may_manage=True)
    assert [d.name for d in cleared] == ["notes"] and await contexts.library(1) is None
    with pytest.raises(UserFacingError, match="no documents of its own"):
        await contexts.clear(1, user_id=5, may_manage=False)


async def test_documents_are_named_and_listed_with_their_authors(contexts: ContextStore) -> None:
    await contexts.set_notes(channel_id=1, guild_id=9, text="Notes.", author_id=5)
    await contexts.add(
        channel_id=1,
        guild_id=9,
        name="guide.pdf",
        text="The guide.",
        source="file guide.pdf",
        author_id=6,
    )
    library = await contexts.library(1)
    assert library is not None and not library.inherited
    assert [(d.name, d.author_id, d.chars) for d in library.documents] == [
        ("notes", 5, 6),
        ("guide.pdf", 6, 10),
    ]
    assert library.chars == 16


async def test_replacing_or_removing_needs_the_author_or_a_manager(
    contexts: ContextStore,
) -> None:
    await contexts.set_notes(channel_id=1, guild_id=9, text="mine", author_id=5)
    await contexts.add(
        channel_id=1, guild_id=9, name="a.txt", text="A.", source="file a.txt", author_id=5
    )
    with pytest.raises(UserFacingError, match="only they or members with the Manage Messages"):
        await contexts.set_notes(channel_id=1, guild_id=9, text="theirs", author_id=6)
    with pytest.raises(UserFacingError, match="only they or members with the Manage Messages"):
        await contexts.add(
            channel_id=1, guild_id=9, name="a.txt", text="B.", source="file a.txt", author_id=6
        )
    with pytest.raises(UserFacingError, match="Manage Messages permission can remove it"):
        await contexts.remove(1, "a.txt", user_id=6, may_manage=False)
    with pytest.raises(UserFacingError, match="Manage Messages permission can clear"):
        await contexts.clear(1, user_id=6, may_manage=False)
    assert await _body(contexts, 1) == "mine" and await _body(contexts, 1, "a.txt") == "A."
    # Adding another document is not replacing: anyone may.
    await contexts.add(
        channel_id=1, guild_id=9, name="b.txt", text="B.", source="file b.txt", author_id=6
    )
    managed = await contexts.set_notes(
        channel_id=1, guild_id=9, text="theirs", author_id=6, may_manage=True
    )
    assert (managed.document.author_id, await _body(contexts, 1)) == (6, "theirs")
    removed = await contexts.remove(1, "a.txt", user_id=6, may_manage=True)
    assert removed.author_id == 5
    with pytest.raises(UserFacingError, match=r"no document `a\.txt`\. Its documents: `notes`"):
        await contexts.remove(1, "a.txt", user_id=5, may_manage=True)


async def test_removals_are_audited(contexts: ContextStore) -> None:
    await contexts.set_notes(channel_id=1, guild_id=9, text="text", author_id=5)
    await contexts.add(
        channel_id=1, guild_id=9, name="x.md", text="X.", source="file x.md", author_id=7
    )
    await contexts.remove(1, "x.md", user_id=6, may_manage=True)
    await contexts.clear(1, user_id=5, may_manage=False)
    clear, remove = await contexts._store.recent_audit(9)
    assert (remove.action, remove.user_id) == ("context.remove", 6) and "'x.md'" in remove.detail
    assert (clear.action, clear.user_id) == ("context.clear", 5) and "1 document" in clear.detail


async def test_a_thread_reads_its_parents_documents_until_it_adds_its_own(
    contexts: ContextStore,
) -> None:
    assert await contexts.library(2, parent_id=1) is None
    await contexts.set_notes(channel_id=1, guild_id=9, text="parent", author_id=5)
    inherited = await contexts.library(2, parent_id=1)
    assert inherited is not None and inherited.inherited and inherited.channel_id == 1
    assert await contexts.library(2) is None  # not a thread: no fallback
    first = await contexts.append_notes(
        channel_id=2, guild_id=9, text="more", author_id=6, parent_id=1
    )
    assert first.copied_parent and await _body(contexts, 2) == "parent\n\nmore"
    second = await contexts.append_notes(
        channel_id=2, guild_id=9, text="again", author_id=6, parent_id=1
    )
    assert not second.copied_parent and await _body(contexts, 2) == "parent\n\nmore\n\nagain"
    assert await _body(contexts, 1) == "parent"
    own = await contexts.library(2, parent_id=1)
    assert own is not None and not own.inherited and own.documents[0].author_id == 5


async def test_uploading_in_an_inheriting_thread_keeps_the_parents_documents(
    contexts: ContextStore,
) -> None:
    await contexts.set_notes(channel_id=1, guild_id=9, text="parent notes", author_id=5)
    written = await contexts.add(
        channel_id=2,
        guild_id=9,
        name="t.txt",
        text="thread file",
        source="file t.txt",
        author_id=6,
        parent_id=1,
    )
    assert written.copied_parent
    library = await contexts.library(2, parent_id=1)
    assert library is not None and [d.name for d in library.documents] == ["notes", "t.txt"]
    parent = await contexts.library(1)
    assert parent is not None and [d.name for d in parent.documents] == ["notes"]


async def test_the_limit_is_the_channels_total_and_refusals_change_nothing(
    tmp_path: Path,
) -> None:
    async with open_contexts(tmp_path / "db.sqlite3", max_chars=30) as contexts:
        await contexts.set_notes(channel_id=1, guild_id=9, text="x" * 20, author_id=5)
        with pytest.raises(ContextTooLong, match="limit is 30"):
            await contexts.append_notes(channel_id=1, guild_id=9, text="y" * 20, author_id=5)
        with pytest.raises(ContextTooLong, match="32 characters"):
            await contexts.add(
                channel_id=1, guild_id=9, name="f", text="z" * 12, source="file f", author_id=5
            )
        # Replacing counts the new size, not both.
        await contexts.set_notes(channel_id=1, guild_id=9, text="w" * 30, author_id=5)
        with pytest.raises(UserFacingError, match="empty"):
            await contexts.set_notes(channel_id=1, guild_id=9, text="   ", author_id=5)
        library = await contexts.library(1)
        assert library is not None and [d.chars for d in library.documents] == [30]
        # A thread's copy of its parent counts against the thread's limit.
        with pytest.raises(ContextTooLong):
            await contexts.append_notes(
                channel_id=2, guild_id=9, text="more", author_id=6, parent_id=1
            )
        assert await contexts.library(2) is None


async def test_documents_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with open_contexts(path) as contexts:
        await contexts.set_notes(channel_id=3, guild_id=1, text="kept", author_id=1)
    async with open_contexts(path) as contexts:
        assert await _body(contexts, 3) == "kept"


async def test_short_channels_are_read_whole_and_long_ones_searched(
    contexts: ContextStore,
) -> None:
    await contexts.set_notes(channel_id=1, guild_id=9, text="Paris is in France.", author_id=5)
    await contexts.add(
        channel_id=1, guild_id=9, name="b", text="Rome is in Italy.", source="file b", author_id=5
    )
    library = await contexts.library(1)
    assert library is not None
    whole = await contexts.sources(library, "Where is Rome?")
    assert whole.whole and [(s.document, s.offset, s.text) for s in whole.items] == [
        ("notes", 0, "Paris is in France."),
        ("b", 0, "Rome is in Italy."),
    ]
    contexts.passages = 1  # read at most 1,100 characters: this channel is now "long"
    contexts.max_chars = 100_000
    paragraphs = [f"Topic {word}: " + f"{word} " * 150 for word in ("alpha", "beta", "gamma")]
    written = await contexts.add(
        channel_id=1,
        guild_id=9,
        name="long",
        text="\n\n".join(paragraphs),
        source="file long",
        author_id=5,
    )
    await contexts.embed(written.document.id)
    library = await contexts.library(1)
    assert library is not None
    searched = await contexts.sources(library, "What about beta?")
    assert not searched.whole and not searched.lexical_only
    [source] = searched.items
    assert source.document == "long" and source.text == paragraphs[1].strip()
    assert source.offset == len(paragraphs[0]) + 2 and source.score is not None
