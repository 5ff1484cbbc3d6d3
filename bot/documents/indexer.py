"""Embedding passages that have no vector yet, in small batches, off the event loop.

New passages are stored without vectors (:mod:`bot.documents.index`); this fills them in. An
upload waits for its own document (:meth:`Indexer.embed_document`, with progress); a background
sweep does the rest: documents split at start (a migrated context, new passage rules), every
passage after the embedding model changed, copies made for a thread, work left by a restart.
A passage whose text already has a vector in the same server (a copy, an unchanged part of an
edited document) takes that vector instead of running the model. Batches are small and take
turns under one lock, so an upload's progress moves while the sweep runs, and questions
queued for the model wait one batch at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.documents import vectors
from bot.documents.embedding import Embedder
from bot.documents.index import DocumentIndex
from models.errors import ModelError

log = logging.getLogger(__name__)

# Passages per embedding request: a fraction of a second of model time on a CPU, so questions
# waiting for the model wait little. Passages are taken WINDOW at a time and sent shortest
# first, so each request pads its texts to about the same length.
BATCH = 16
WINDOW = 64
# After a failure (the model cannot load), the sweep tries again this much later, twice as
# long after each further failure, up to MAX_RETRY_AFTER_S.
RETRY_AFTER_S = 60.0
MAX_RETRY_AFTER_S = 900.0

Progress = Callable[[int, int], Awaitable[None]]


@dataclass(frozen=True)
class IndexingOutcome:
    """How embedding one document went: ``problem`` says why it stopped early, if it did."""

    passages: int
    embedded: int
    problem: str | None = None


class Indexer:
    """Fills in passage vectors with ``embedder`` (None: no vectors, search is lexical)."""

    def __init__(
        self,
        index: DocumentIndex,
        embedder: Embedder | None,
        *,
        batch: int = BATCH,
        retry_after_s: float = RETRY_AFTER_S,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.batch = batch
        self.retry_after_s = retry_after_s
        self._lock = asyncio.Lock()
        self._work = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Split documents under the current passage rules, note a changed embedding model,
        and start the background sweep."""
        for document_id in await self.index.unsplit():
            await self.index.split_again(document_id)
        if self.embedder is not None:
            key = self.embedder.model_key
            async with self.index.db.transaction() as conn:
                await vectors.use_model(conn, key)
            self._sweeper = asyncio.create_task(self._sweep(), name="documents-indexer")
            self.kick()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    def kick(self) -> None:
        """There may be passages to embed."""
        self._work.set()

    async def pending(self, document_id: int | None = None) -> int:
        """Passages (of one document, or all) waiting for a vector."""
        query = "SELECT COUNT(*) FROM passages WHERE embedded = 0"
        parameters: tuple[int, ...] = ()
        if document_id is not None:
            query += " AND document_id = ?"
            parameters = (document_id,)
        row = await self.index.db.fetchone(query, parameters)
        return int(row[0])

    async def embed_document(
        self, document_id: int, progress: Progress | None = None
    ) -> IndexingOutcome:
        """Embed the document's passages now; ``progress(done, total)`` after each batch."""
        total = await self.pending(document_id)
        if self.embedder is None:
            return IndexingOutcome(total, 0, "no embedding model is configured")
        while True:
            try:
                count = await self._embed_batch(document_id)
            except ModelError as exc:
                self.kick()  # the sweep tries again later
                done = total - await self.pending(document_id)
                return IndexingOutcome(total, max(0, done), str(exc))
            if count == 0:
                return IndexingOutcome(total, total)
            if progress is not None:
                await progress(max(0, total - await self.pending(document_id)), total)

    async def _sweep(self) -> None:
        delay = self.retry_after_s
        while True:
            await self._work.wait()
            self._work.clear()
            try:
                while await self._embed_batch(None):
                    pass  # each batch awaits the database and the model: others run between
            except ModelError as exc:
                log.warning("indexing paused, retrying in %.0f s: %s", delay, exc)
            except Exception:
                log.exception("indexing failed; retrying in %.0f s", delay)
            else:
                delay = self.retry_after_s
                continue
            await asyncio.sleep(delay)
            delay = min(2 * delay, max(MAX_RETRY_AFTER_S, self.retry_after_s))
            self.kick()

    async def _embed_batch(self, document_id: int | None) -> int:
        """Give up to ``WINDOW`` waiting passages a vector; return how many were waiting."""
        assert self.embedder is not None
        db = self.index.db
        async with self._lock:
            query = "SELECT id, channel_id, guild_id, digest FROM passages WHERE embedded = 0"
            parameters: tuple[int, ...] = ()
            if document_id is not None:
                query += " AND document_id = ?"
                parameters = (document_id,)
            window = self.batch * (WINDOW // BATCH)
            rows = await db.fetchall(query + f" ORDER BY id LIMIT {window:d}", parameters)
            if not rows:
                return 0
            found = await self._known_vectors(rows)
            missing = [int(row[0]) for row in rows if int(row[0]) not in found]
            if missing:
                marks = ",".join("?" * len(missing))
                texts = dict(
                    await db.fetchall(
                        f"SELECT rowid, body FROM passages_fts WHERE rowid IN ({marks})",
                        tuple(missing),
                    )
                )
                wanted = sorted((i for i in missing if i in texts), key=lambda i: len(texts[i]))
                for start in range(0, len(wanted), self.batch):
                    group = wanted[start : start + self.batch]
                    embedded = await self.embedder.embed([texts[i] for i in group])
                    found.update(zip(group, embedded, strict=True))
            await self._store(rows, found)
            return len(rows)

    async def _known_vectors(
        self, rows: list[tuple[int, int, int | None, str]]
    ) -> dict[int, bytes]:
        """Vectors of passages with the same text in the same server, by waiting passage."""
        donors: dict[int, int] = {}
        for passage_id, _, guild_id, digest in rows:
            donor = await self.index.db.fetchone(
                "SELECT id FROM passages WHERE digest = ? AND guild_id IS ? AND embedded = 1 "
                "LIMIT 1",
                (digest, guild_id),
            )
            if donor is not None:
                donors[int(passage_id)] = int(donor[0])
        stored = await vectors.read(self.index.db.conn, list(set(donors.values())))
        return {
            passage_id: stored[donor] for passage_id, donor in donors.items() if donor in stored
        }

    async def _store(
        self, rows: list[tuple[int, int, int | None, str]], found: dict[int, bytes]
    ) -> None:
        assert self.embedder is not None
        ids = [int(row[0]) for row in rows]
        marks = ",".join("?" * len(ids))
        async with self.index.db.transaction() as conn:
            async with conn.execute(
                f"SELECT id FROM passages WHERE id IN ({marks}) AND embedded = 0", tuple(ids)
            ) as cursor:
                waiting = {int(row[0]) for row in await cursor.fetchall()}
            # Passages removed meanwhile are skipped.
            todo = [
                (int(row[0]), int(row[1]), found[int(row[0])])
                for row in rows
                if int(row[0]) in waiting and int(row[0]) in found
            ]
            try:
                await vectors.insert(conn, todo)
            except vectors.DimensionChanged as exc:
                log.warning(
                    "stored vectors do not match the embedding model (%s): re-indexing", exc
                )
                await vectors.reset(conn, self.embedder.model_key)
                return
            await conn.executemany(
                "UPDATE passages SET embedded = 1 WHERE id = ?", [(row[0],) for row in todo]
            )
            # A passage without text (never expected) must not be picked again forever.
            lost = [(passage_id,) for passage_id in waiting if passage_id not in found]
            await conn.executemany("UPDATE passages SET embedded = -1 WHERE id = ?", lost)
