"""Passages: paragraphs when they fit, sentences with overlap when not, stable under appends."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.documents.chunking import MAX_CHARS, Span, paragraphs, split_passages


def texts(spans: list[Span], text: str) -> list[str]:
    return [text[s.start : s.end] for s in spans]


def test_paragraphs_that_fit_are_passages_and_short_ones_join_the_next() -> None:
    long_a = "Alpha " * 100  # 600 characters
    long_b = "Beta " * 120
    text = f"Title\n\n{long_a.strip()}\n\n  \n{long_b.strip()}\n\nShort end."
    assert texts(paragraphs(text), text) == ["Title", long_a.strip(), long_b.strip(), "Short end."]
    passages = texts(split_passages(text), text)
    # "Title" (short) joins the next paragraph; the last short one stays alone at the end.
    assert passages == [f"Title\n\n{long_a.strip()}", long_b.strip(), "Short end."]


def test_a_long_paragraph_is_cut_at_sentences_overlapping_by_one() -> None:
    sentences = [f"Sentence number {i} says something about topic {i}." for i in range(60)]
    text = " ".join(sentences)
    passages = texts(split_passages(text), text)
    assert len(passages) > 1
    assert all(len(p) <= MAX_CHARS for p in passages)
    for before, after in itertools.pairwise(passages):
        last_sentence = before.rsplit(". ", 1)[-1]
        assert after.startswith(last_sentence)  # one sentence of overlap
    assert passages[0].startswith("Sentence number 0 ") and passages[-1].endswith("topic 59.")


def test_a_sentence_longer_than_a_passage_is_cut_at_lines_or_spaces() -> None:
    text = "\n".join(f"row {i} value {i * 7}" for i in range(400))  # no sentence ends
    spans = split_passages(text)
    assert len(spans) > 3 and all(len(s) <= MAX_CHARS for s in spans)
    assert all(text[s.start] != " " and text[s.end - 1] != " " for s in spans)
    unbroken = "x" * 5000  # not even a space: hard cuts
    assert [len(s) for s in split_passages(unbroken)][:2] == [MAX_CHARS, MAX_CHARS]


def test_empty_and_blank_texts_have_no_passages() -> None:
    assert split_passages("") == [] and split_passages(" \n\n \t") == []


_words = st.text(alphabet="abcde .!?\n", min_size=0, max_size=3000)


@settings(max_examples=60, deadline=None)
@given(_words)
def test_passages_cover_the_text_in_order_within_the_limit(text: str) -> None:
    spans = split_passages(text, max_chars=300, min_chars=80)
    assert all(0 <= s.start < s.end <= len(text) and len(s) <= 300 for s in spans)
    assert [s.start for s in spans] == sorted(s.start for s in spans)
    covered = set()
    for span in spans:
        covered.update(range(span.start, span.end))
        assert not text[span.start].isspace() and not text[span.end - 1].isspace()
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())


@settings(max_examples=60, deadline=None)
@given(_words, _words)
def test_appending_a_paragraph_keeps_every_passage_but_the_last(text: str, more: str) -> None:
    before = split_passages(text, max_chars=300, min_chars=80)
    after = split_passages(f"{text}\n\n{more}", max_chars=300, min_chars=80)
    assert after[: max(0, len(before) - 1)] == before[:-1]
