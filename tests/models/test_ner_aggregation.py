"""NER "simple" aggregation and window merging, on hand-made token predictions."""

from __future__ import annotations

import numpy as np
import pytest

from models.ner import TokenPrediction, aggregate_simple, merge_windows
from tests.support.models import CONLL_LABELS

ID2LABEL = dict(enumerate(CONLL_LABELS))
LABEL_ID = {label: i for i, label in ID2LABEL.items()}


def token(text: str, start: int, label: str, score: float = 0.9) -> TokenPrediction:
    scores = np.full(len(CONLL_LABELS), (1 - score) / (len(CONLL_LABELS) - 1))
    scores[LABEL_ID[label]] = score
    return TokenPrediction(text, start, start + len(text.removeprefix("##")), scores)


def join(tokens: list[str]) -> str:
    return " ".join(tokens).replace(" ##", "")


def test_b_and_i_tags_of_one_type_form_one_entity_with_mean_score() -> None:
    # "John Smith lives in New York"
    tokens = [
        token("john", 0, "B-PER", 0.9),
        token("smith", 5, "I-PER", 0.7),
        token("lives", 11, "O"),
        token("in", 17, "O"),
        token("new", 20, "B-LOC", 0.8),
        token("york", 24, "I-LOC", 0.6),
    ]
    entities = aggregate_simple(tokens, ID2LABEL, join)
    assert [(e.word, e.entity_group, e.start, e.end) for e in entities] == [
        ("john smith", "PER", 0, 10),
        ("new york", "LOC", 20, 28),
    ]
    assert entities[0].score == pytest.approx(0.8)
    assert entities[1].score == pytest.approx(0.7)


def test_a_b_tag_starts_a_new_entity_even_after_the_same_type() -> None:
    tokens = [token("paris", 0, "B-LOC"), token("london", 6, "B-LOC")]
    entities = aggregate_simple(tokens, ID2LABEL, join)
    assert [e.word for e in entities] == ["paris", "london"]


def test_type_change_splits_and_subwords_join() -> None:
    tokens = [
        token("goo", 0, "B-ORG"),
        token("##gle", 3, "I-ORG"),
        token("berlin", 7, "I-LOC"),
    ]
    entities = aggregate_simple(tokens, ID2LABEL, join)
    assert [(e.word, e.entity_group, e.start, e.end) for e in entities] == [
        ("google", "ORG", 0, 6),
        ("berlin", "LOC", 7, 13),
    ]


def test_only_o_tokens_give_no_entities() -> None:
    assert aggregate_simple([token("hello", 0, "O")], ID2LABEL, join) == []


def test_merge_windows_keeps_the_prediction_with_most_context() -> None:
    # Tokens at chars 0..5; window A holds tokens 0-3, window B tokens 2-5 (overlap 2-3).
    def w(indices: range, label: str) -> list[TokenPrediction]:
        return [token(f"t{i}", i * 3, label) for i in indices]

    a = w(range(0, 4), "B-PER")
    b = w(range(2, 6), "B-LOC")
    merged = merge_windows([a, b])
    assert [t.start for t in merged] == [0, 3, 6, 9, 12, 15]
    labels = [CONLL_LABELS[int(np.argmax(t.scores))] for t in merged]
    # Token 2 is nearer the middle of window A (margin 1) than of B (margin 0); token 3 the
    # reverse.
    assert labels == ["B-PER", "B-PER", "B-PER", "B-LOC", "B-LOC", "B-LOC"]


def test_word_is_the_original_text_when_given() -> None:
    text = "Visit Goo gle"
    tokens = [token("visit", 0, "O"), token("goo", 6, "B-ORG"), token("gle", 10, "I-ORG")]
    [entity] = aggregate_simple(tokens, ID2LABEL, join, text=text)
    assert (entity.word, entity.start, entity.end) == ("Goo gle", 6, 13)
