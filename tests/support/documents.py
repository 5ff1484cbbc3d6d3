"""Documents test helpers: a deterministic embedder, a PDF writer, the documents service.

- :class:`WordEmbedder`: bag-of-words vectors (hashed words, unit length): texts sharing words
  are near, so retrieval can be tested without a model; it counts its calls.
- :func:`minimal_pdf`: a valid PDF with one text page per string (standard Helvetica font, so
  pypdf extracts the text back), made in the test: no binary fixtures in the repository.
- :func:`open_contexts`: the store, the index, the indexer and the service on one database.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from bot.contexts import ContextStore
from bot.documents.embedding import Embedder
from bot.documents.index import DocumentIndex
from bot.documents.indexer import Indexer
from bot.store import Store
from models.errors import ModelUnavailable

_WORD = re.compile(r"\w+")


class WordEmbedder:
    """Hashed bag-of-words vectors of ``dimension`` floats, normalised."""

    def __init__(self, dimension: int = 64, model_key: str = "test-words") -> None:
        self.dimension = dimension
        self.model_key = model_key
        self.texts_embedded = 0

    def vector(self, text: str) -> bytes:
        values = [0.0] * self.dimension
        for word in _WORD.findall(text.lower()):
            slot = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big")
            values[slot % self.dimension] += 1.0
        norm = math.sqrt(sum(v * v for v in values)) or 1.0
        return struct.pack(f"<{self.dimension}f", *(v / norm for v in values))

    async def embed(self, texts: Sequence[str]) -> list[bytes]:
        self.texts_embedded += len(texts)
        return [self.vector(text) for text in texts]


class UnavailableEmbedder:
    """An embedding model that cannot load."""

    model_key = "missing-model"

    async def embed(self, texts: Sequence[str]) -> list[bytes]:
        raise ModelUnavailable("The embedding model is not available.", reason="test")


def _pdf_string(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def minimal_pdf(pages: Sequence[str]) -> bytes:
    """A PDF with one page per item of ``pages`` (lines split at newlines, Latin-1 text)."""
    objects: list[str] = []
    page_ids = [3 + 2 * i for i in range(len(pages))]
    font_id = 3 + 2 * len(pages)
    objects.append("<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{i} 0 R" for i in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>")
    for page_id, text in zip(page_ids, pages, strict=True):
        lines = " T* ".join(f"{_pdf_string(line)} Tj" for line in text.split("\n"))
        stream = f"BT /F1 11 Tf 14 TL 72 740 Td {lines} ET"
        objects.append(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Contents {page_id + 1} 0 R /Resources << /Font << /F1 {font_id} 0 R >> >> >>"
        )
        objects.append(
            f"<< /Length {len(stream.encode('latin-1'))} >>\nstream\n{stream}\nendstream"
        )
    objects.append(
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    )
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


@asynccontextmanager
async def open_contexts(
    path: Path,
    embedder: Embedder | None = None,
    *,
    max_chars: int = 100_000,
    passages: int = 4,
) -> AsyncIterator[ContextStore]:
    """The documents service on the database at ``path`` (created when missing), started."""
    store = await Store.open(path)
    index = await DocumentIndex.open(path)
    indexer = Indexer(index, embedder, retry_after_s=0.05)
    try:
        await indexer.start()
        yield ContextStore(store, index, indexer, max_chars=max_chars, passages=passages)
    finally:
        await indexer.close()
        await index.close()
        await store.close()
