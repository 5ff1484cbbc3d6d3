"""Documents and their passages in SQLite: what is stored, written in transactions, and read.

:class:`DocumentIndex` owns the index connection (:mod:`bot.documents.database`). Writes go
through :meth:`DocumentIndex.writing`, which yields an :class:`IndexWriter` inside one
``BEGIN IMMEDIATE`` transaction, so a caller's checks (who may replace what, size limits) see
exactly what they change. Passages are written with their document: the spans come from
:func:`bot.documents.chunking.split_passages` (computed off the event loop by the caller),
each with a digest of its text. Replacing a document keeps the passages whose span and text
did not change (and so their vectors); new ones wait for :mod:`bot.documents.indexer`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.documents import vectors
from bot.documents.chunking import CHUNKER_VERSION, split_passages
from bot.documents.database import IndexConnection

_INFO_COLUMNS = (
    "id, channel_id, guild_id, name, chars, source, author_id, created_at, updated_by, "
    "updated_at, version"
)


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    """A document without its text."""

    id: int
    channel_id: int
    guild_id: int | None
    name: str
    chars: int
    source: str  # "text" or "file <name>"
    author_id: int  # who added it (may replace or remove it)
    created_at: datetime
    updated_by: int
    updated_at: datetime
    version: int


@dataclass(frozen=True, slots=True)
class Document:
    info: DocumentInfo
    body: str


@dataclass(frozen=True, slots=True)
class PassageSpan:
    """A passage to store: ``body[start:end]`` and the digest of that text."""

    start: int
    end: int
    digest: str


def digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def plan_passages(body: str) -> list[PassageSpan]:
    """The passages of ``body`` with digests (blocking: seconds for millions of characters)."""
    return [
        PassageSpan(span.start, span.end, digest(body[span.start : span.end]))
        for span in split_passages(body)
    ]


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _info(row: Any) -> DocumentInfo:
    values = list(row)
    values[7] = datetime.fromisoformat(values[7])
    values[9] = datetime.fromisoformat(values[9])
    return DocumentInfo(*values)


def channel_token(channel_id: int) -> str:
    """The word that marks a channel's passages in the full-text table."""
    return f"c{channel_id:d}"


class IndexWriter:
    """Reads and writes inside one transaction of the index connection."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def rows(self, query: str, parameters: tuple[Any, ...] = ()) -> list[Any]:
        async with self.conn.execute(query, parameters) as cursor:
            return list(await cursor.fetchall())

    async def documents(self, channel_id: int) -> list[DocumentInfo]:
        rows = await self.rows(
            f"SELECT {_INFO_COLUMNS} FROM documents WHERE channel_id = ? ORDER BY id",
            (channel_id,),
        )
        return [_info(row) for row in rows]

    async def find(self, channel_id: int, name: str) -> DocumentInfo | None:
        rows = await self.rows(
            f"SELECT {_INFO_COLUMNS} FROM documents WHERE channel_id = ? AND name = ?",
            (channel_id, name),
        )
        return _info(rows[0]) if rows else None

    async def channel_chars(self, channel_id: int) -> int:
        rows = await self.rows(
            "SELECT COALESCE(SUM(chars), 0) FROM documents WHERE channel_id = ?", (channel_id,)
        )
        return int(rows[0][0])

    async def put(
        self,
        *,
        channel_id: int,
        guild_id: int | None,
        name: str,
        body: str,
        passages: Sequence[PassageSpan],
        source: str,
        author_id: int,
        updated_by: int,
        replacing: DocumentInfo | None,
        created_at: datetime | None = None,
    ) -> int:
        """Write a document (a new one, or ``replacing`` an existing one) and its passages;
        return its id. ``created_at`` None means now."""
        stamp = now()
        if replacing is None:
            cursor = await self.conn.execute(
                "INSERT INTO documents (channel_id, guild_id, name, body, chars, source, "
                "author_id, created_at, updated_by, updated_at, chunker) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    channel_id,
                    guild_id,
                    name,
                    body,
                    len(body),
                    source,
                    author_id,
                    (created_at or stamp).isoformat(),
                    updated_by,
                    stamp.isoformat(),
                    CHUNKER_VERSION,
                ),
            )
            document_id = int(cursor.lastrowid)
        else:
            document_id = replacing.id
            created = created_at or stamp
            await self.conn.execute(
                "UPDATE documents SET guild_id = ?, body = ?, chars = ?, source = ?, "
                "author_id = ?, created_at = ?, updated_by = ?, updated_at = ?, "
                "version = version + 1, chunker = ? WHERE id = ?",
                (
                    guild_id,
                    body,
                    len(body),
                    source,
                    author_id,
                    created.isoformat(),
                    updated_by,
                    stamp.isoformat(),
                    CHUNKER_VERSION,
                    document_id,
                ),
            )
        await self.replace_passages(document_id, channel_id, guild_id, body, passages)
        return document_id

    async def replace_passages(
        self,
        document_id: int,
        channel_id: int,
        guild_id: int | None,
        body: str,
        passages: Sequence[PassageSpan],
    ) -> None:
        """Make the document's passages ``passages``, keeping those already stored."""
        old = await self.rows(
            "SELECT id, start_char, end_char, digest FROM passages WHERE document_id = ?",
            (document_id,),
        )
        wanted = {(p.start, p.end, p.digest) for p in passages}
        kept = {(row[1], row[2], row[3]) for row in old if (row[1], row[2], row[3]) in wanted}
        gone = [int(row[0]) for row in old if (row[1], row[2], row[3]) not in kept]
        await self._delete_passages(gone)
        token = channel_token(channel_id)
        for passage in passages:
            if (passage.start, passage.end, passage.digest) in kept:
                continue
            cursor = await self.conn.execute(
                "INSERT INTO passages (document_id, channel_id, guild_id, start_char, end_char, "
                "digest) VALUES (?, ?, ?, ?, ?, ?)",
                (document_id, channel_id, guild_id, passage.start, passage.end, passage.digest),
            )
            await self.conn.execute(
                "INSERT INTO passages_fts (rowid, channel, body) VALUES (?, ?, ?)",
                (cursor.lastrowid, token, body[passage.start : passage.end]),
            )

    async def _delete_passages(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        rows = [(passage_id,) for passage_id in ids]
        await self.conn.executemany("DELETE FROM passages_fts WHERE rowid = ?", rows)
        await vectors.delete(self.conn, ids)
        await self.conn.executemany("DELETE FROM passages WHERE id = ?", rows)

    async def remove(self, document_id: int) -> None:
        """Delete a document with its passages and their vectors."""
        rows = await self.rows("SELECT id FROM passages WHERE document_id = ?", (document_id,))
        await self._delete_passages([int(row[0]) for row in rows])
        await self.conn.execute("DELETE FROM documents WHERE id = ?", (document_id,))

    async def copy_channel(self, source_id: int, target_id: int, guild_id: int | None) -> int:
        """Copy every document of ``source_id`` (its text, passages, authors and times) into
        ``target_id``; return how many. The copies' vectors are filled from the originals'
        by the indexer (same text, same guild), without the model."""
        copied = 0
        token = channel_token(target_id)
        for info in await self.documents(source_id):
            cursor = await self.conn.execute(
                "INSERT INTO documents (channel_id, guild_id, name, body, chars, source, "
                "author_id, created_at, updated_by, updated_at, version, chunker) "
                "SELECT ?, guild_id, name, body, chars, source, author_id, created_at, "
                "updated_by, updated_at, version, chunker FROM documents WHERE id = ?",
                (target_id, info.id),
            )
            document_id = int(cursor.lastrowid)
            for row in await self.rows(
                "SELECT id, start_char, end_char, digest FROM passages "
                "WHERE document_id = ? ORDER BY start_char",
                (info.id,),
            ):
                inserted = await self.conn.execute(
                    "INSERT INTO passages (document_id, channel_id, guild_id, start_char, "
                    "end_char, digest) VALUES (?, ?, ?, ?, ?, ?)",
                    (document_id, target_id, guild_id, row[1], row[2], row[3]),
                )
                await self.conn.execute(
                    "INSERT INTO passages_fts (rowid, channel, body) "
                    "SELECT ?, ?, body FROM passages_fts WHERE rowid = ?",
                    (inserted.lastrowid, token, row[0]),
                )
            copied += 1
        return copied


class DocumentIndex:
    """The documents of every channel, their passages and vectors, in the bot's database."""

    def __init__(self, db: IndexConnection) -> None:
        self.db = db

    @classmethod
    async def open(cls, path: Path | str) -> DocumentIndex:
        return cls(await IndexConnection.open(path))

    async def close(self) -> None:
        await self.db.close()

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[IndexWriter]:
        """One write transaction."""
        async with self.db.transaction() as conn:
            yield IndexWriter(conn)

    async def documents(self, channel_id: int) -> list[DocumentInfo]:
        """The channel's own documents, oldest first."""
        return await IndexWriter(self.db.conn).documents(channel_id)

    async def document(self, channel_id: int, name: str) -> Document | None:
        row = await self.db.fetchone(
            f"SELECT {_INFO_COLUMNS}, body FROM documents WHERE channel_id = ? AND name = ?",
            (channel_id, name),
        )
        return Document(_info(row[:-1]), row[-1]) if row is not None else None

    async def bodies(self, document_ids: Sequence[int]) -> dict[int, str]:
        marks = ",".join("?" * len(document_ids))
        rows = await self.db.fetchall(
            f"SELECT id, body FROM documents WHERE id IN ({marks})", tuple(document_ids)
        )
        return {int(row[0]): str(row[1]) for row in rows}

    async def unsplit(self) -> list[int]:
        """Documents not split under the current passage rules (migrated, or older rules)."""
        rows = await self.db.fetchall(
            "SELECT id FROM documents WHERE chunker IS NOT ? ORDER BY id", (CHUNKER_VERSION,)
        )
        return [int(row[0]) for row in rows]

    async def split_again(self, document_id: int, plan: Any = plan_passages) -> None:
        """Split one document under the current rules (off the loop), unless it changed."""
        row = await self.db.fetchone(
            "SELECT channel_id, guild_id, body, version FROM documents WHERE id = ?",
            (document_id,),
        )
        if row is None:
            return
        channel_id, guild_id, body, version = row
        passages = await asyncio.to_thread(plan, body)
        async with self.writing() as writer:
            current = await writer.rows(
                "SELECT version FROM documents WHERE id = ?", (document_id,)
            )
            if not current or current[0][0] != version:
                return  # written meanwhile: that write split it
            await writer.replace_passages(document_id, channel_id, guild_id, body, passages)
            await writer.conn.execute(
                "UPDATE documents SET chunker = ? WHERE id = ?", (CHUNKER_VERSION, document_id)
            )
