"""A folder's files as the documents of one channel, for `python -m bot infer ask`.

The files are read with the upload parsers, indexed in a temporary database by the same service
the bot uses (:class:`bot.contexts.ContextStore`), and questions are answered on the same path
as `/ask`: the whole text when it is short, else retrieval, then the reader.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.contexts import ContextStore, Library
from bot.documents.embedding import Embedder
from bot.documents.index import DocumentIndex
from bot.documents.indexer import Indexer
from bot.documents.parsing import DOCUMENT_SUFFIXES, DocumentRefused, document_text
from bot.documents.reading import Reader, read
from bot.store import Store

log = logging.getLogger(__name__)

CHANNEL = 0  # the one "channel" a folder's documents are in
OPERATOR = 0  # their author


class FolderError(Exception):
    """The folder cannot be read as documents; the message says why."""


class IndexingFailed(Exception):
    """The documents could not be embedded (the embedding model cannot serve)."""


def document_files(folder: Path) -> list[Path]:
    """The readable documents under ``folder`` (hidden files and folders left out), sorted."""
    if not folder.is_dir():
        raise FolderError(f"{folder} is not a folder")
    files = [
        path
        for path in sorted(folder.rglob("*"))
        if path.is_file()
        and path.suffix.lower() in DOCUMENT_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    ]
    if not files:
        kinds = ", ".join(sorted(DOCUMENT_SUFFIXES))
        raise FolderError(f"{folder} has no documents ({kinds})")
    return files


def _read(path: Path, name: str) -> str:
    try:
        return document_text(path.read_bytes(), name)
    except OSError as exc:
        raise FolderError(f"cannot read {path}: {exc.strerror or exc}") from None
    except DocumentRefused as exc:
        raise FolderError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class FolderIndex:
    """A folder's documents, indexed: ask questions with :meth:`ask`."""

    contexts: ContextStore
    library: Library

    async def ask(self, reader: Reader, question: str) -> dict[str, Any]:
        """The answers (best first) and the passages read (in retrieval order), as JSON."""
        sources = await self.contexts.sources(self.library, question)
        reading = await read(reader, question, sources.items)
        return {
            "question": question,
            "answers": [
                {
                    "text": a.text,
                    "score": a.score,
                    "document": a.document,
                    "start": a.start,
                    "end": a.end,
                }
                for a in reading.answers
            ],
            "passages": [
                {
                    "document": s.document,
                    "start": s.offset,
                    "end": s.offset + len(s.text),
                    "score": s.score,
                }
                for s in sources.items
            ],
            "partly_read": [
                {"document": p.document, "read_chars": p.read_chars, "total_chars": p.total_chars}
                for p in reading.partly_read
            ],
        }


@asynccontextmanager
async def index_folder(
    folder: Path, embedder: Embedder | None, *, passages: int, verbose: bool = False
) -> AsyncIterator[FolderIndex]:
    """Every document under ``folder`` indexed in a temporary database (removed on exit)."""
    files = document_files(folder)
    with tempfile.TemporaryDirectory(prefix="hfcord-ask-") as scratch:
        path = Path(scratch) / "documents.sqlite3"
        store = await Store.open(path)
        index = await DocumentIndex.open(path)
        indexer = Indexer(index, embedder)
        try:
            await indexer.start()
            contexts = ContextStore(store, index, indexer, max_chars=sys.maxsize, passages=passages)
            for file in files:
                name = file.relative_to(folder).as_posix()
                text = await asyncio.to_thread(_read, file, name)
                written = await contexts.add(
                    channel_id=CHANNEL,
                    guild_id=None,
                    name=name,
                    text=text,
                    source=f"file {name}",
                    author_id=OPERATOR,
                    may_manage=True,
                )
                outcome = await contexts.embed(written.document.id)
                if outcome.problem is not None:
                    raise IndexingFailed(f"cannot embed {name}: {outcome.problem}")
                if verbose:
                    print(
                        f"indexed {name}: {len(text):,} characters, {outcome.passages} passages",
                        file=sys.stderr,
                    )
            library = await contexts.library(CHANNEL)
            assert library is not None
            yield FolderIndex(contexts, library)
        finally:
            await indexer.close()
            await index.close()
            await store.close()


def human(result: dict[str, Any], answers: int | None = None) -> str:
    """A result as lines: score, document, span and text of each answer."""
    rows: Sequence[dict[str, Any]] = result["answers"][:answers]
    if not rows:
        return "(no answer)"
    return "\n".join(
        f"{a['score']:.4f}\t{a['document']}\t{a['start']}-{a['end']}\t{a['text']}" for a in rows
    )
