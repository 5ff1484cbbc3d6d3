"""Each channel's documents, the service behind `/context` and `/ask`.

A channel (a thread is one of its own) holds named documents: uploads, and "notes", the one
`/context set` replaces and `/context append` extends. A thread without documents of its own
reads its parent channel's; the first document added in such a thread starts the thread's own
set as a copy of the parent's (authors kept), so adding never hides what the parent holds.

The rules are checked here, inside the transaction that writes: replacing or removing a
document someone else added needs that author or the Manage Messages permission; a channel's
documents together hold at most ``max_chars`` characters. Removals are written to the audit log.

For `/ask`, :meth:`ContextStore.sources` decides what the reader reads: when the channel's text
is no longer than the passages a question would read anyway, every document whole (exactly
what `/ask` read before documents existed); otherwise the best passages found by
:func:`bot.documents.search.retrieve`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.documents.chunking import MAX_CHARS
from bot.documents.index import (
    Document,
    DocumentIndex,
    DocumentInfo,
    IndexWriter,
    PassageSpan,
    plan_passages,
)
from bot.documents.indexer import Indexer, IndexingOutcome, Progress
from bot.documents.reading import Source
from bot.documents.search import retrieve
from bot.errors import UserFacingError
from bot.store import Store
from models.errors import ModelError

log = logging.getLogger(__name__)

NOTES = "notes"
# Bounds the wait for a question's embedding; past it the search is by words only.
QUESTION_EMBEDDING_TIMEOUT_S = 30.0
# Times a write computed outside its transaction is tried again when the document changed.
_WRITE_ATTEMPTS = 3


class ContextTooLong(UserFacingError):
    """The channel's documents would exceed the configured size."""


class _Changed(Exception):
    """The document an edit was computed from changed before the edit was written."""


@dataclass(frozen=True)
class Library:
    """The documents `/ask` reads in a channel: its own, or (``inherited``) its parent's."""

    channel_id: int
    documents: tuple[DocumentInfo, ...]
    inherited: bool

    @property
    def chars(self) -> int:
        return sum(document.chars for document in self.documents)


@dataclass(frozen=True)
class Written:
    """A document after a write; ``copied_parent``: the thread's own documents were started
    from its parent channel's by this write."""

    document: DocumentInfo
    copied_parent: bool
    channel_chars: int


@dataclass(frozen=True)
class Sources:
    """What the reader reads for one question, in retrieval order; ``whole``: every document
    whole; ``lexical_only``: retrieval had no question vector (no embedding model)."""

    items: tuple[Source, ...]
    whole: bool
    lexical_only: bool = False


class ContextStore:
    """Documents keyed by channel, with the thread fallback, the rules and the audit."""

    def __init__(
        self,
        store: Store,
        index: DocumentIndex,
        indexer: Indexer,
        *,
        max_chars: int,
        passages: int = 4,
    ) -> None:
        self._store = store
        self.index = index
        self.indexer = indexer
        self.max_chars = max_chars
        self.passages = passages

    @property
    def whole_text_chars(self) -> int:
        """A channel holding at most this much text is read whole."""
        return self.passages * MAX_CHARS

    # ----------------------------------------------------------------- reading

    async def documents(self, channel_id: int) -> list[DocumentInfo]:
        """The channel's own documents, oldest first."""
        return await self.index.documents(channel_id)

    async def library(self, channel_id: int, parent_id: int | None = None) -> Library | None:
        """The channel's documents, else (for a thread) its parent's; None when neither has any."""
        own = await self.index.documents(channel_id)
        if own or parent_id is None:
            return Library(channel_id, tuple(own), False) if own else None
        inherited = await self.index.documents(parent_id)
        return Library(parent_id, tuple(inherited), True) if inherited else None

    async def document(self, library: Library, name: str | None) -> Document | None:
        """A document of ``library`` by name; without a name its only one, else its notes."""
        if name is None:
            names = [document.name for document in library.documents]
            name = names[0] if len(names) == 1 else NOTES
        return await self.index.document(library.channel_id, name)

    async def sources(self, library: Library, question: str) -> Sources:
        """What to read to answer ``question`` from ``library`` (see the module docstring)."""
        if library.chars <= self.whole_text_chars:
            bodies = await self.index.bodies([document.id for document in library.documents])
            return Sources(
                tuple(
                    Source(document.name, 0, bodies[document.id])
                    for document in library.documents
                    if document.id in bodies
                ),
                whole=True,
            )
        vector = await self._question_vector(question)
        found = await retrieve(self.index, library.channel_id, question, vector, self.passages)
        return Sources(
            tuple(Source(p.document, p.start, p.text, p.score) for p in found),
            whole=False,
            lexical_only=vector is None,
        )

    async def _question_vector(self, question: str) -> bytes | None:
        embedder = self.indexer.embedder
        if embedder is None:
            return None
        try:
            [vector] = await asyncio.wait_for(
                embedder.embed([question]), QUESTION_EMBEDDING_TIMEOUT_S
            )
        except (ModelError, TimeoutError) as exc:
            log.warning("searching by words only: the question could not be embedded (%s)", exc)
            return None
        return vector

    # ----------------------------------------------------------------- writing

    async def set_notes(
        self,
        *,
        channel_id: int,
        guild_id: int | None,
        text: str,
        author_id: int,
        may_manage: bool = False,
        parent_id: int | None = None,
    ) -> Written:
        """Replace the channel's notes with ``text``; the setter becomes their author.

        Replacing notes someone else wrote needs ``may_manage`` (Manage Messages).
        """
        return await self.add(
            channel_id=channel_id,
            guild_id=guild_id,
            name=NOTES,
            text=text,
            source="text",
            author_id=author_id,
            may_manage=may_manage,
            parent_id=parent_id,
        )

    async def add(
        self,
        *,
        channel_id: int,
        guild_id: int | None,
        name: str,
        text: str,
        source: str,
        author_id: int,
        may_manage: bool = False,
        parent_id: int | None = None,
    ) -> Written:
        """Add the document ``name`` (replacing one of that name: its author or a manager)."""
        text = text.strip()
        if not text:
            raise UserFacingError("The text is empty; give some text to answer questions from.")
        self._check_size(len(text))
        passages = await asyncio.to_thread(plan_passages, text)

        async def write(writer: IndexWriter, existing: DocumentInfo | None) -> int:
            if existing is not None and existing.author_id != author_id and not may_manage:
                raise UserFacingError(
                    f"`{name}` here was added by <@{existing.author_id}>; only they or members "
                    "with the Manage Messages permission can replace it."
                    + (" Add to it with `/context append` instead." if name == NOTES else "")
                )
            return await writer.put(
                channel_id=channel_id,
                guild_id=guild_id,
                name=name,
                body=text,
                passages=passages,
                source=source,
                author_id=author_id,
                updated_by=author_id,
                replacing=existing,
            )

        return await self._write(channel_id, guild_id, name, parent_id, len(text), write)

    async def append_notes(
        self,
        *,
        channel_id: int,
        guild_id: int | None,
        text: str,
        author_id: int,
        parent_id: int | None = None,
    ) -> Written:
        """Add ``text`` at the end of the notes (a new paragraph), starting them if needed.
        Anyone may add; the notes keep their author."""
        text = text.strip()
        if not text:
            raise UserFacingError("There is nothing to add; give some text.")
        for _ in range(_WRITE_ATTEMPTS):
            basis = await self._notes_basis(channel_id, parent_id)
            body = f"{basis.body}\n\n{text}" if basis is not None else text
            self._check_size(len(body))
            passages = await asyncio.to_thread(plan_passages, body)
            write = functools.partial(
                self._put_appended,
                channel_id=channel_id,
                guild_id=guild_id,
                basis=basis.info if basis is not None else None,
                body=body,
                passages=passages,
                appender_id=author_id,
            )
            try:
                return await self._write(channel_id, guild_id, NOTES, parent_id, len(body), write)
            except _Changed:
                continue
        raise UserFacingError("The notes changed while I was adding to them; try again.")

    @staticmethod
    async def _put_appended(
        writer: IndexWriter,
        existing: DocumentInfo | None,
        *,
        channel_id: int,
        guild_id: int | None,
        basis: DocumentInfo | None,
        body: str,
        passages: list[PassageSpan],
        appender_id: int,
    ) -> int:
        """Write appended notes, unless the notes changed since ``body`` was made from them
        (a thread's copy of its parent's notes has the parent's version)."""
        if (existing is None) != (basis is None) or (
            existing is not None and basis is not None and existing.version != basis.version
        ):
            raise _Changed
        return await writer.put(
            channel_id=channel_id,
            guild_id=guild_id,
            name=NOTES,
            body=body,
            passages=passages,
            source=existing.source if existing is not None else "text",
            author_id=existing.author_id if existing is not None else appender_id,
            updated_by=appender_id,
            replacing=existing,
            created_at=existing.created_at if existing is not None else None,
        )

    async def _notes_basis(self, channel_id: int, parent_id: int | None) -> Document | None:
        """The notes an append extends: the channel's, or an inheriting thread's parent's."""
        if await self.index.documents(channel_id) or parent_id is None:
            return await self.index.document(channel_id, NOTES)
        return await self.index.document(parent_id, NOTES)

    async def _write(
        self,
        channel_id: int,
        guild_id: int | None,
        name: str,
        parent_id: int | None,
        new_chars: int,
        write: Callable[[IndexWriter, DocumentInfo | None], Awaitable[int]],
    ) -> Written:
        """Run ``write`` in one transaction, after copying an inheriting thread's parent
        documents, with the size limit checked on the result."""
        async with self.index.writing() as writer:
            copied = False
            if parent_id is not None and not await writer.documents(channel_id):
                copied = await writer.copy_channel(parent_id, channel_id, guild_id) > 0
            existing = await writer.find(channel_id, name)
            others = await writer.channel_chars(channel_id) - (existing.chars if existing else 0)
            self._check_size(others + new_chars)
            document_id = await write(writer, existing)
            stored = next(d for d in await writer.documents(channel_id) if d.id == document_id)
        self.indexer.kick()
        return Written(stored, copied, others + new_chars)

    def _check_size(self, size: int) -> None:
        if size > self.max_chars:
            raise ContextTooLong(
                f"That would make this channel's documents {size:,} characters long; "
                f"the limit is {self.max_chars:,}. Remove a document with `/context remove` "
                "first, or add less."
            )

    async def embed(self, document_id: int, progress: Progress | None = None) -> IndexingOutcome:
        """Index a just-written document now (``progress(done, total)`` as it goes)."""
        return await self.indexer.embed_document(document_id, progress)

    # ----------------------------------------------------------------- removing

    async def remove(
        self, channel_id: int, name: str, *, user_id: int, may_manage: bool
    ) -> DocumentInfo:
        """Remove one of the channel's own documents (its author, or a manager); audited."""
        async with self.index.writing() as writer:
            document = await writer.find(channel_id, name)
            if document is None:
                names = ", ".join(f"`{d.name}`" for d in await writer.documents(channel_id))
                raise UserFacingError(
                    f"This channel has no document `{name}`."
                    + (f" Its documents: {names}." if names else "")
                )
            if document.author_id != user_id and not may_manage:
                raise UserFacingError(
                    f"Only <@{document.author_id}>, who added `{name}`, or members with the "
                    "Manage Messages permission can remove it."
                )
            await writer.remove(document.id)
        await self._store.audit(
            guild_id=document.guild_id,
            user_id=user_id,
            action="context.remove",
            detail=f"channel {channel_id}, {name!r} added by {document.author_id}",
        )
        return document

    async def clear(self, channel_id: int, *, user_id: int, may_manage: bool) -> list[DocumentInfo]:
        """Remove all the channel's own documents (allowed when the user added every one of
        them, or may manage messages); audited."""
        async with self.index.writing() as writer:
            documents = await writer.documents(channel_id)
            if not documents:
                raise UserFacingError("This channel has no documents of its own to clear.")
            others = sorted({d.author_id for d in documents if d.author_id != user_id})
            if others and not may_manage:
                authors = ", ".join(f"<@{author}>" for author in others)
                raise UserFacingError(
                    f"Some of this channel's documents were added by {authors}; only members "
                    "with the Manage Messages permission can clear them all. Remove yours "
                    "with `/context remove`."
                )
            for document in documents:
                await writer.remove(document.id)
        await self._store.audit(
            guild_id=documents[0].guild_id,
            user_id=user_id,
            action="context.clear",
            detail=f"channel {channel_id}, {len(documents)} document(s) by "
            + ", ".join(str(a) for a in sorted({d.author_id for d in documents})),
        )
        return documents
