"""Splitting a document into passages: what the index searches and the reader reads.

A passage is a span of the document (character offsets, so answers point back into it). The
rules, measured on SQuAD (see ``bench/documents.py``): a paragraph is the best unit, so a
paragraph that fits in ``max_chars`` is one passage; short paragraphs (under ``min_chars``)
join the next one while the two fit; a longer paragraph is cut at sentence ends into passages
of at most ``max_chars`` that overlap by one sentence, and a sentence longer than that is cut at
a line end or a space, with a little overlap. ``max_chars`` (1,100) keeps a passage within the
embedding model's 256 tokens and one reader window.

The spans of a text's beginning do not depend on what follows it (except the last one), so
appending to a document changes only its last passages, and only those are embedded again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Stored with each document: documents split under other rules are split again at start.
CHUNKER_VERSION = "paragraphs-1100-v1"
MAX_CHARS = 1100
MIN_CHARS = 300
# Overlap between pieces of a sentence too long for one passage.
PIECE_OVERLAP = 120

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+")


@dataclass(frozen=True, slots=True)
class Span:
    """``text[start:end]`` of the document."""

    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start


def _stripped(text: str, start: int, end: int) -> Span | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Span(start, end) if end > start else None


def _split(text: str, pattern: re.Pattern[str], start: int, end: int) -> list[Span]:
    spans = []
    position = start
    for match in pattern.finditer(text, start, end):
        span = _stripped(text, position, match.start())
        if span is not None:
            spans.append(span)
        position = match.end()
    last = _stripped(text, position, end)
    if last is not None:
        spans.append(last)
    return spans


def paragraphs(text: str) -> list[Span]:
    """The text's paragraphs (separated by blank lines), without surrounding space."""
    return _split(text, _PARAGRAPH_BREAK, 0, len(text))


def _pieces(text: str, span: Span, max_chars: int) -> list[Span]:
    """A span longer than ``max_chars`` cut at line ends or spaces, overlapping a little."""
    pieces = []
    start = span.start
    while span.end - start > max_chars:
        limit = start + max_chars
        cut = text.rfind("\n", start + max_chars // 2, limit)
        if cut == -1:
            cut = max(
                text.rfind(" ", start + max_chars // 2, limit), text.rfind("\t", start, limit)
            )
        if cut <= start + max_chars // 2:
            cut = limit
        piece = _stripped(text, start, cut)
        if piece is not None:
            pieces.append(piece)
        # The next piece starts at a word boundary a little before the cut.
        back = text.find(" ", max(start + 1, cut - PIECE_OVERLAP), cut)
        start = back + 1 if back != -1 else cut
    last = _stripped(text, start, span.end)
    if last is not None:
        pieces.append(last)
    return pieces


def _sentence_groups(text: str, paragraph: Span, max_chars: int) -> list[Span]:
    """A long paragraph as passages of whole sentences, each repeating the previous one's last
    sentence."""
    sentences: list[Span] = []
    for sentence in _split(text, _SENTENCE_END, paragraph.start, paragraph.end):
        sentences.extend(
            _pieces(text, sentence, max_chars) if len(sentence) > max_chars else [sentence]
        )
    groups = []
    first = 0
    while first < len(sentences):
        last = first
        while (
            last + 1 < len(sentences)
            and sentences[last + 1].end - sentences[first].start <= max_chars
        ):
            last += 1
        groups.append(Span(sentences[first].start, sentences[last].end))
        if last + 1 >= len(sentences):
            break
        # Overlap by one sentence when the group has more than one and it is not too long.
        overlap = last > first and len(sentences[last]) <= max_chars // 2
        first = last if overlap else last + 1
    return groups


def split_passages(
    text: str, *, max_chars: int = MAX_CHARS, min_chars: int = MIN_CHARS
) -> list[Span]:
    """The passages of ``text``, in order (see the module docstring for the rules)."""
    if max_chars < 2 * PIECE_OVERLAP:
        raise ValueError(f"max_chars must be at least {2 * PIECE_OVERLAP}")
    passages: list[Span] = []
    current: Span | None = None
    for paragraph in paragraphs(text):
        if len(paragraph) > max_chars:
            if current is not None:
                passages.append(current)
                current = None
            passages.extend(_sentence_groups(text, paragraph, max_chars))
        elif current is None:
            current = paragraph
        elif len(current) < min_chars and paragraph.end - current.start <= max_chars:
            current = Span(current.start, paragraph.end)
        else:
            passages.append(current)
            current = paragraph
    if current is not None:
        passages.append(current)
    return passages
