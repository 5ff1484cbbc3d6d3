"""The index in SQLite: passages with their documents, vectors kept, copied, re-made."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from bot.documents import vectors
from bot.documents.index import DocumentIndex, plan_passages
from bot.documents.indexer import Indexer
from bot.documents.search import retrieve
from bot.store import Store, load_migrations
from models.errors import ModelUnavailable
from tests.support.documents import UnavailableEmbedder, WordEmbedder, open_contexts
from tests.support.waiting import wait_until

PARAGRAPHS = [
    f"Paragraph {i} is about {topic} and nothing else, repeated {'so it is long enough ' * 20}."
    for i, topic in enumerate(["towers", "rivers", "castles", "bridges", "forests", "islands"])
]
BODY = "\n\n".join(PARAGRAPHS)


async def _counts(index: DocumentIndex) -> tuple[int, int, int]:
    passages = (await index.db.fetchone("SELECT COUNT(*) FROM passages"))[0]
    fts = (await index.db.fetchone("SELECT COUNT(*) FROM passages_fts"))[0]
    stored = 0
    if await vectors.table_exists(index.db.conn):
        stored = (await index.db.fetchone(f"SELECT COUNT(*) FROM {vectors.TABLE}"))[0]
    return passages, fts, stored


async def _passage_ids(index: DocumentIndex, document_id: int) -> list[int]:
    rows = await index.db.fetchall(
        "SELECT id FROM passages WHERE document_id = ? ORDER BY start_char", (document_id,)
    )
    return [row[0] for row in rows]


async def test_writing_keeps_unchanged_passages_and_their_vectors(tmp_path: Path) -> None:
    embedder = WordEmbedder()
    async with open_contexts(tmp_path / "db.sqlite3", embedder) as contexts:
        written = await contexts.set_notes(channel_id=1, guild_id=9, text=BODY, author_id=5)
        outcome = await contexts.embed(written.document.id)
        assert outcome.problem is None and outcome.embedded == outcome.passages == 6
        before = await _passage_ids(contexts.index, written.document.id)
        assert embedder.texts_embedded == 6 and await _counts(contexts.index) == (6, 6, 6)

        appended = await contexts.append_notes(
            channel_id=1, guild_id=9, text="A new paragraph about deserts.", author_id=6
        )
        await contexts.embed(appended.document.id)
        after = await _passage_ids(contexts.index, written.document.id)
        # Only the last passage changed (the short new paragraph stands alone): one embedding.
        assert after[:6] == before and len(after) == 7
        assert embedder.texts_embedded == 7 and await _counts(contexts.index) == (7, 7, 7)

        await contexts.remove(1, "notes", user_id=5, may_manage=False)
        assert await _counts(contexts.index) == (0, 0, 0)


async def test_copies_take_their_vectors_from_the_originals_without_the_model(
    tmp_path: Path,
) -> None:
    embedder = WordEmbedder()
    async with open_contexts(tmp_path / "db.sqlite3", embedder) as contexts:
        parent = await contexts.set_notes(channel_id=1, guild_id=9, text=BODY, author_id=5)
        await contexts.embed(parent.document.id)
        # A thread adds a document: it first gets its own copy of the parent's.
        written = await contexts.add(
            channel_id=2,
            guild_id=9,
            name="extra.txt",
            text="Extra text about volcanoes.",
            source="file extra.txt",
            author_id=6,
            parent_id=1,
        )
        assert written.copied_parent
        await contexts.indexer.embed_document(written.document.id)
        copy = await contexts.index.document(2, "notes")
        assert copy is not None and copy.info.author_id == 5 and copy.body == BODY
        await _drain(contexts.indexer)
        assert embedder.texts_embedded == 7  # 6 originals + the new document, no copy
        assert await _counts(contexts.index) == (13, 13, 13)
        vector = embedder.vector("castles")
        in_thread = await retrieve(contexts.index, 2, "castles", vector, 1)
        in_parent = await retrieve(contexts.index, 1, "castles", vector, 1)
        assert in_thread[0].text == in_parent[0].text and in_thread[0].id != in_parent[0].id


async def _drain(indexer: Indexer) -> None:
    while await indexer.pending():
        await indexer._embed_batch(None)


async def test_searches_stay_in_their_channel(tmp_path: Path) -> None:
    embedder = WordEmbedder()
    async with open_contexts(tmp_path / "db.sqlite3", embedder) as contexts:
        for channel, text in ((1, "Towers are tall."), (2, "Towers in channel two are short.")):
            written = await contexts.set_notes(
                channel_id=channel, guild_id=9, text=text, author_id=5
            )
            await contexts.embed(written.document.id)
        for channel, expected in ((1, "Towers are tall."), (2, "Towers in channel two are short.")):
            found = await retrieve(
                contexts.index, channel, "How tall are towers?", embedder.vector("towers"), 4
            )
            assert [p.text for p in found] == [expected]
        assert await retrieve(contexts.index, 3, "towers", embedder.vector("towers"), 4) == []


async def test_changing_the_embedding_model_embeds_everything_again(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with open_contexts(path, WordEmbedder(64, "model-a")) as contexts:
        written = await contexts.set_notes(channel_id=1, guild_id=9, text=BODY, author_id=5)
        await contexts.embed(written.document.id)
        assert await vectors.dimension(contexts.index.db.conn) == 64
    again = WordEmbedder(32, "model-a")
    async with open_contexts(path, again) as contexts:
        assert await contexts.indexer.pending() == 0  # same model: nothing to do
    other = WordEmbedder(32, "model-b")
    async with open_contexts(path, other) as contexts:
        assert await contexts.indexer.pending() == 6
        await _drain(contexts.indexer)
        assert other.texts_embedded == 6
        assert await vectors.dimension(contexts.index.db.conn) == 32
        assert await vectors.indexed_model(contexts.index.db.conn) == "model-b"


async def test_without_an_embedding_model_search_is_lexical(tmp_path: Path) -> None:
    async with open_contexts(tmp_path / "db.sqlite3", UnavailableEmbedder()) as contexts:
        written = await contexts.set_notes(channel_id=1, guild_id=9, text=BODY, author_id=5)
        outcome = await contexts.embed(written.document.id)
        assert outcome.problem is not None and outcome.embedded == 0
        found = await retrieve(contexts.index, 1, "Which paragraph is about rivers?", None, 2)
        assert "rivers" in found[0].text


async def test_a_context_from_before_documents_becomes_the_notes(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = await Store.open(path, migrations=[m for m in load_migrations() if m.version <= 3])
    await store.close()
    async with aiosqlite.connect(path) as conn:
        await conn.execute(
            "INSERT INTO qa_contexts VALUES (7, 9, ?, 'file old.md', 5, "
            "'2026-01-02T03:04:05+00:00', 6, '2026-01-03T03:04:05+00:00')",
            (BODY,),
        )
        await conn.commit()
    embedder = WordEmbedder()
    async with open_contexts(path, embedder) as contexts:
        [notes] = await contexts.documents(7)
        assert (notes.name, notes.chars, notes.author_id, notes.updated_by) == (
            "notes",
            len(BODY),
            5,
            6,
        )
        assert notes.source == "file old.md" and notes.created_at.day == 2
        # Split into passages at start, embedded by the background sweep.
        assert len(await _passage_ids(contexts.index, notes.id)) == len(plan_passages(BODY))
        await _drain(contexts.indexer)
        assert embedder.texts_embedded == 6


class FlakyEmbedder(WordEmbedder):
    """Fails its first ``failures`` calls (a model that cannot load yet), then works."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def embed(self, texts: Sequence[str]) -> list[bytes]:
        if self.failures > 0:
            self.failures -= 1
            raise ModelUnavailable("not yet", reason="test")
        return await super().embed(texts)


async def test_the_background_sweep_retries_until_the_model_serves(tmp_path: Path) -> None:
    embedder = FlakyEmbedder(failures=2)
    async with open_contexts(tmp_path / "db.sqlite3", embedder) as contexts:
        written = await contexts.set_notes(channel_id=1, guild_id=9, text=BODY, author_id=5)
        outcome = await contexts.embed(written.document.id)
        assert outcome.problem == "not yet"
        # Nobody asks again: the sweep keeps trying (backing off) and gets there.
        await wait_until(lambda: _pending_is_zero(contexts.indexer), timeout=20, what="vectors")
        assert embedder.failures == 0 and embedder.texts_embedded == 6


async def _pending_is_zero(indexer: Indexer) -> bool:
    return await indexer.pending() == 0
