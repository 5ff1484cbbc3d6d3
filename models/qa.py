"""Extractive QA: windowing and answer postprocessing as transformers 4.x's QA pipeline did it
(4.46-4.52; ``bench/qa_parity.py`` measured 200/200 identical spans over 1-11 windows).

transformers 5 dropped the question-answering pipeline. The postprocessing here reproduces the
4.x pipeline (``select_starts_ends`` / ``decode_spans`` and word alignment) as pure numpy
functions over :class:`QAWindow` values, so they can be tested on hand-made logits and reused by
the fine-tuning evaluation. One deliberate difference: candidates that are not valid spans
(end before start, longer than ``max_answer_len``, zero score) are dropped instead of being
returned when ``top_k`` exceeds the number of real candidates, and a span found in two
overlapping windows is listed once, with its best score. For ``top_k == 1`` the answer is the
pipeline's up to transformers 4.52. From 4.53 the pipeline adds up the scores of answers with the
same lower-cased text (and from 4.54 keeps 12 candidates a window), so its scores stop being
probabilities; hfcord keeps the earlier rule because its "not found" threshold compares a
probability. Only question-first tokenizers (padding on the right) are supported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.results import Answer

# Large positive start for the running minimum of the null score (as the pipeline).
_NULL_SCORE_START = 1_000_000.0


@dataclass(frozen=True)
class QAWindow:
    """One tokenized window of (question, context) with the model's logits.

    ``offsets`` are character offsets into the sequence each token came from, ``word_ids``
    the tokenizer's word index per token (None for special tokens), ``sequence_ids`` 0 for the
    question, 1 for the context, None for special tokens; ``p_mask`` is 1 where a token cannot be
    part of an answer.
    """

    start_logits: np.ndarray
    end_logits: np.ndarray
    p_mask: np.ndarray
    attention_mask: np.ndarray | None
    offsets: Sequence[tuple[int, int]]
    word_ids: Sequence[int | None]
    sequence_ids: Sequence[int | None]


def build_p_mask(
    sequence_ids: Sequence[int | None],
    input_ids: Sequence[int],
    cls_token_id: int | None,
    *,
    context_sequence: int = 1,
) -> np.ndarray:
    """1 for tokens that cannot be in the answer (question, special), 0 for context and [CLS]."""
    p_mask = np.asarray([seq != context_sequence for seq in sequence_ids], dtype=np.int64)
    if cls_token_id is not None:
        p_mask[np.asarray(input_ids) == cls_token_id] = 0
    return p_mask


def decode_spans(
    start: np.ndarray,
    end: np.ndarray,
    top_k: int,
    max_answer_len: int,
    undesired_tokens: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``top_k`` (start, end) token pairs by ``p_start * p_end``, end within
    ``max_answer_len - 1`` tokens after start, both on allowed tokens."""
    if start.ndim == 1:
        start = start[None]
    if end.ndim == 1:
        end = end[None]
    # Score of every (start, end) pair; keep end >= start and end - start < max_answer_len.
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    scores_flat = candidates.flatten()
    if top_k == 1:
        idx_sort = np.asarray([np.argmax(scores_flat)])
    elif len(scores_flat) <= top_k:
        idx_sort = np.argsort(-scores_flat)
    else:
        idx = np.argpartition(-scores_flat, top_k)[0:top_k]
        idx_sort = idx[np.argsort(-scores_flat[idx])]
    starts, ends = np.unravel_index(idx_sort, candidates.shape)[1:]
    allowed = np.flatnonzero(np.asarray(undesired_tokens).reshape(-1))
    desired = np.isin(starts, allowed) & np.isin(ends, allowed)
    starts = starts[desired]
    ends = ends[desired]
    scores = candidates[0, starts, ends]
    valid = (ends >= starts) & (ends - starts < max_answer_len) & (scores > 0)
    return starts[valid], ends[valid], scores[valid]


def select_starts_ends(
    start: np.ndarray,
    end: np.ndarray,
    p_mask: np.ndarray,
    attention_mask: np.ndarray | None,
    min_null_score: float = _NULL_SCORE_START,
    top_k: int = 1,
    handle_impossible_answer: bool = False,
    max_answer_len: int = 15,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Softmax start/end logits over allowed tokens, track the null score, decode the spans.

    Allowed tokens are the context tokens plus [CLS] (excluded from answers after the
    softmax), minus padding. Returns starts, ends, scores and the updated minimum null score.
    """
    undesired_tokens = np.abs(np.asarray(p_mask, dtype=np.int64) - 1)
    if attention_mask is not None:
        undesired_tokens = undesired_tokens & np.asarray(attention_mask, dtype=np.int64)
    undesired_mask = undesired_tokens == 0
    start = np.where(undesired_mask, -10000.0, np.asarray(start, dtype=np.float64))
    end = np.where(undesired_mask, -10000.0, np.asarray(end, dtype=np.float64))
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if start.ndim == 1:
        start = start[None]
        end = end[None]
    if handle_impossible_answer:
        min_null_score = min(min_null_score, float(start[0, 0] * end[0, 0]))
    # [CLS] took part in the softmax (it stands for "no answer") but is never an answer.
    start[0, 0] = end[0, 0] = 0.0
    starts, ends, scores = decode_spans(start, end, top_k, max_answer_len, undesired_tokens)
    return starts, ends, scores, min_null_score


def span_to_chars(
    window: QAWindow,
    start_token: int,
    end_token: int,
    *,
    context_sequence: int = 1,
    align_to_words: bool = True,
) -> tuple[int, int]:
    """Character span in the context for tokens ``start_token..end_token``.

    With ``align_to_words`` the span grows to whole words (a token in the middle of a word gives
    the whole word), as the pipeline's ``token_to_word``/``word_to_chars`` do.
    """
    start_char = window.offsets[start_token][0]
    end_char = window.offsets[end_token][1]
    if not align_to_words:
        return start_char, end_char
    start_word = window.word_ids[start_token]
    end_word = window.word_ids[end_token]
    if start_word is None or end_word is None:
        return start_char, end_char
    in_start_word = [
        i
        for i, (word, seq) in enumerate(zip(window.word_ids, window.sequence_ids, strict=True))
        if word == start_word and seq == context_sequence
    ]
    in_end_word = [
        i
        for i, (word, seq) in enumerate(zip(window.word_ids, window.sequence_ids, strict=True))
        if word == end_word and seq == context_sequence
    ]
    if in_start_word:
        start_char = window.offsets[in_start_word[0]][0]
    if in_end_word:
        end_char = window.offsets[in_end_word[-1]][1]
    return start_char, end_char


def postprocess_qa(
    windows: Sequence[QAWindow],
    context: str,
    *,
    top_k: int = 1,
    handle_impossible_answer: bool = False,
    max_answer_len: int = 15,
    align_to_words: bool = True,
) -> list[Answer]:
    """Best answers over all windows of one (question, context), best first, at most ``top_k``.

    Scores are probabilities within each window, as in the pipeline. With
    ``handle_impossible_answer`` the empty answer competes with the lowest null score seen.
    """
    min_null_score = _NULL_SCORE_START
    # Different token spans can align to the same words; ask for spares so that deduplicating
    # still leaves top_k answers. (top_k == 1 decodes exactly as the pipeline.)
    per_window = top_k if top_k == 1 else top_k * 4
    candidates: dict[tuple[int, int], float] = {}
    order: list[tuple[int, int]] = []
    for window in windows:
        starts, ends, scores, min_null_score = select_starts_ends(
            window.start_logits,
            window.end_logits,
            window.p_mask,
            window.attention_mask,
            min_null_score,
            per_window,
            handle_impossible_answer,
            max_answer_len,
        )
        for s, e, score in zip(starts.tolist(), ends.tolist(), scores.tolist(), strict=True):
            span = span_to_chars(window, s, e, align_to_words=align_to_words)
            # Overlapping windows find the same span twice; keep its best score once.
            if span not in candidates:
                order.append(span)
                candidates[span] = score
            elif score > candidates[span]:
                candidates[span] = score
    answers = [
        Answer(text=context[start:end], score=candidates[(start, end)], start=start, end=end)
        for start, end in order
    ]
    if handle_impossible_answer:
        answers.append(Answer(text="", score=min_null_score, start=0, end=0))
    answers.sort(key=lambda answer: answer.score, reverse=True)
    return answers[:top_k]


def encode_qa(
    tokenizer: Any,
    question: str,
    context: str,
    *,
    max_seq_len: int = 384,
    doc_stride: int = 128,
) -> Any:
    """Tokenize one (question, context) into overlapping windows of at most ``max_seq_len``
    tokens, truncating only the context, with ``doc_stride`` tokens of overlap."""
    return tokenizer(
        text=question,
        text_pair=context,
        padding=False,
        truncation="only_second",
        max_length=max_seq_len,
        stride=doc_stride,
        return_token_type_ids=True,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
