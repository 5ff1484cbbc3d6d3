"""The extractive reader over what retrieval found (or over whole documents when they are short).

Each source (a passage, or a whole short document) is one question-answering request; they run
concurrently, so the registry batches them. The best span of each source competes on the
reader's score (a probability within its window, as the pipeline's), best first; ties keep
retrieval order. A whole document read alone is exactly the request ``/ask`` always made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.text import sentence_around
from models.results import QAResult


class Reader(Protocol):
    """Extractive QA over one context (``ModelRegistry.answer``)."""

    async def answer(
        self, question: str, context: str, guild_id: int | None = None, top_k: int = 1
    ) -> QAResult: ...


@dataclass(frozen=True, slots=True)
class Source:
    """Text to read: ``text`` is ``document``'s body from ``offset`` on; ``score`` is the
    retrieval score (None for a whole document)."""

    document: str
    offset: int
    text: str
    score: float | None = None


@dataclass(frozen=True, slots=True)
class Quote:
    """The sentence holding an answer; ``answer_start``/``answer_end`` locate the answer in it
    (None when the sentence was shortened around it and it cannot be placed)."""

    sentence: str
    answer_start: int | None
    answer_end: int | None


@dataclass(frozen=True, slots=True)
class Found:
    """An answer: ``text`` is ``document``'s body from ``start`` to ``end``."""

    text: str
    score: float
    document: str
    start: int
    end: int
    quote: Quote


def quote_of(text: str, start: int, end: int) -> Quote:
    """The sentence of ``text`` around ``[start, end)`` and where the answer is in it."""
    sentence = sentence_around(text, start, end)
    offset = text.find(sentence)
    if offset != -1 and offset <= start and end <= offset + len(sentence):
        return Quote(sentence, start - offset, end - offset)
    return Quote(sentence, None, None)


@dataclass(frozen=True, slots=True)
class PartlyRead:
    """A source longer than the reader windows one request may cover
    (``HFCORD_QA_MAX_WINDOWS``): only its first ``read_chars`` of ``total_chars`` were searched."""

    document: str
    read_chars: int
    total_chars: int


@dataclass(frozen=True, slots=True)
class Reading:
    """What reading found: ``answers`` best first; ``partly_read`` the sources cut short."""

    answers: list[Found]
    partly_read: list[PartlyRead]

    @property
    def best(self) -> Found | None:
        return self.answers[0] if self.answers else None


async def read(
    reader: Reader, question: str, sources: Sequence[Source], *, guild_id: int | None = None
) -> Reading:
    """The best answer of each source, best first (empty spans left out), and which sources
    were too long to read whole."""
    results = await asyncio.gather(
        *(reader.answer(question, source.text, guild_id=guild_id) for source in sources)
    )
    found = []
    partly_read = [
        PartlyRead(source.document, result.read_chars, len(source.text))
        for source, result in zip(sources, results, strict=True)
        if result.read_chars is not None
    ]
    for source, result in zip(sources, results, strict=True):
        best = result.best
        if best is None or best.is_empty:
            continue
        found.append(
            Found(
                text=best.text,
                score=best.score,
                document=source.document,
                start=source.offset + best.start,
                end=source.offset + best.end,
                quote=quote_of(source.text, best.start, best.end),
            )
        )
    # sorted() is stable: equal scores keep retrieval order.
    return Reading(sorted(found, key=lambda answer: -answer.score), partly_read)
