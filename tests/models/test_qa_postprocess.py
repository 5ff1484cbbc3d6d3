"""QA postprocessing on a hand-made window: the 4.x pipeline's span decoding, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.qa import (
    QAWindow,
    build_p_mask,
    decode_spans,
    postprocess_qa,
    select_starts_ends,
    span_to_chars,
)

CONTEXT = "Alice met Bob in Paris"
#            0      1   2   3     4   5   6   7   8      9       10     11
TOKENS = [
    "[CLS]",
    "who",
    "?",
    "[SEP]",
    "alice",
    "met",
    "bob",
    "in",
    "par",
    "##is",
    "[SEP]",
    "[PAD]",
]
SEQUENCE_IDS = [None, 0, 0, None, 1, 1, 1, 1, 1, 1, None, None]
WORD_IDS = [None, 0, 1, None, 0, 1, 2, 3, 4, 4, None, None]
OFFSETS = [
    (0, 0),
    (0, 3),
    (3, 4),
    (0, 0),
    (0, 5),
    (6, 9),
    (10, 13),
    (14, 16),
    (17, 20),
    (20, 22),
    (0, 0),
    (0, 0),
]
INPUT_IDS = [101, 1, 2, 102, 3, 4, 5, 6, 7, 8, 102, 0]
ATTENTION = np.array([[1] * 11 + [0]])


def window(start: dict[int, float], end: dict[int, float]) -> QAWindow:
    """Logits 0 everywhere except the given token positions; question and padding get large
    logits, which the masks must neutralise."""
    start_logits = np.zeros((1, 12))
    end_logits = np.zeros((1, 12))
    for logits in (start_logits, end_logits):
        logits[0, [1, 2, 11]] = 10.0
    for i, value in start.items():
        start_logits[0, i] = value
    for i, value in end.items():
        end_logits[0, i] = value
    return QAWindow(
        start_logits=start_logits,
        end_logits=end_logits,
        p_mask=build_p_mask(SEQUENCE_IDS, INPUT_IDS, cls_token_id=101)[None],
        attention_mask=ATTENTION,
        offsets=OFFSETS,
        word_ids=WORD_IDS,
        sequence_ids=SEQUENCE_IDS,
    )


def test_p_mask_allows_context_and_cls_only() -> None:
    p_mask = build_p_mask(SEQUENCE_IDS, INPUT_IDS, cls_token_id=101)
    assert p_mask.tolist() == [0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1]


def test_best_span_probability_is_softmax_over_context_and_cls() -> None:
    # Allowed tokens: [CLS] and the six context tokens. exp(log 4) = 4 at "par", 1 elsewhere,
    # so p("par") = 4 / (4 + 6) = 0.4 for start and for end; the best span scores 0.16.
    w = window({8: math.log(4)}, {8: math.log(4)})
    starts, ends, scores, _ = select_starts_ends(
        w.start_logits, w.end_logits, w.p_mask, w.attention_mask
    )
    assert starts.tolist() == [8] and ends.tolist() == [8]
    assert scores[0] == pytest.approx(0.16)


def test_answer_is_aligned_to_whole_words_in_the_original_context() -> None:
    w = window({8: math.log(4)}, {8: math.log(4)})
    assert span_to_chars(w, 8, 8) == (17, 22)
    assert span_to_chars(w, 8, 8, align_to_words=False) == (17, 20)
    [answer] = postprocess_qa([w], CONTEXT)
    assert (answer.text, answer.start, answer.end) == ("Paris", 17, 22)
    assert answer.score == pytest.approx(0.16)


def test_top_k_lists_distinct_spans_best_first() -> None:
    # Next best after "Paris" (0.16): spans with one "par" end, scoring 0.4 * 0.1 = 0.04.
    # (8, 9) is "Paris" again once aligned to words, so it is not repeated.
    w = window({8: math.log(4)}, {8: math.log(4)})
    answers = postprocess_qa([w], CONTEXT, top_k=2, max_answer_len=2)
    assert [a.text for a in answers] == ["Paris", "in Paris"]
    assert answers[1].score == pytest.approx(0.04)
    assert answers[1].start == 14


def test_max_answer_len_excludes_long_spans() -> None:
    # Start peaks at "alice" (4), end at "##is" (9): that span is 6 tokens long.
    w = window({4: math.log(50)}, {9: math.log(50)})
    [long_answer] = postprocess_qa([w], CONTEXT, max_answer_len=15)
    assert long_answer.text == CONTEXT
    [short_answer] = postprocess_qa([w], CONTEXT, max_answer_len=3)
    # Only spans of at most 3 tokens remain; the best keeps one peak: 50/56 * 1/56.
    assert short_answer.text != CONTEXT
    assert short_answer.score == pytest.approx(50 / 56 / 56)


def test_no_answer_wins_when_cls_is_most_likely() -> None:
    # exp: CLS 12, "par" 4, five others 1 -> p(CLS) = 12/21, p("par") = 4/21.
    w = window({0: math.log(12), 8: math.log(4)}, {0: math.log(12), 8: math.log(4)})
    answers = postprocess_qa([w], CONTEXT, top_k=2, handle_impossible_answer=True)
    assert answers[0].is_empty and answers[0].text == ""
    assert answers[0].score == pytest.approx((12 / 21) ** 2)
    assert answers[1].text == "Paris"
    assert answers[1].score == pytest.approx((4 / 21) ** 2)
    # Without no-answer handling, [CLS] never becomes an answer.
    [only] = postprocess_qa([w], CONTEXT)
    assert only.text == "Paris"


def test_best_answer_over_several_windows() -> None:
    weak = window({6: math.log(4)}, {6: math.log(4)})  # "Bob", 0.16
    strong = window({8: math.log(24)}, {8: math.log(24)})  # "Paris", (24/30)^2 = 0.64
    answers = postprocess_qa([weak, strong], CONTEXT, top_k=2)
    assert [a.text for a in answers] == ["Paris", "Bob"]
    assert answers[0].score == pytest.approx(0.64)
    assert answers[1].score == pytest.approx(0.16)


def test_decode_spans_band_is_upper_triangular() -> None:
    start = np.array([[0.0, 0.1, 0.7, 0.2]])
    end = np.array([[0.0, 0.6, 0.1, 0.3]])
    allowed = np.array([[1, 1, 1, 1]])
    starts, ends, scores = decode_spans(start, end, 3, 2, allowed)
    # end >= start and end - start <= 1: (2,3)=0.21, (2,2)=0.07, (1,1)=0.06
    assert list(zip(starts.tolist(), ends.tolist(), strict=True)) == [(2, 3), (2, 2), (1, 1)]
    assert scores.tolist() == pytest.approx([0.21, 0.07, 0.06])
