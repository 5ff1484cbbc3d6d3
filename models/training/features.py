"""Turn parsed examples into model features for each task (tokenization and label alignment)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from models.training.datasets.types import (
    ClassificationExample,
    QAExample,
    TextExample,
    TokenExample,
)

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label id the loss (and our metrics) skip


class FeatureList(list[dict[str, Any]]):
    """A list of feature dicts; the Trainer indexes it like a map-style dataset."""


def classification_features(
    examples: Sequence[ClassificationExample],
    tokenizer: Any,
    label2id: Mapping[str, int],
    max_length: int,
) -> FeatureList:
    """Single sentences or pairs, truncated; padding happens per batch in the collator."""
    texts = [ex.text for ex in examples]
    pairs = (
        [ex.text_pair or "" for ex in examples] if any(ex.text_pair for ex in examples) else None
    )
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    out = FeatureList()
    for i, ex in enumerate(examples):
        item = {key: enc[key][i] for key in enc.keys()}
        item["labels"] = label2id[ex.label]
        out.append(item)
    return out


def token_features(
    examples: Sequence[TokenExample],
    tokenizer: Any,
    label2id: Mapping[str, int],
    max_length: int,
) -> FeatureList:
    """Word-level tags aligned to word pieces: the first piece carries the tag, the rest -100."""
    enc = tokenizer(
        [list(ex.tokens) for ex in examples],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
    )
    out = FeatureList()
    for i, ex in enumerate(examples):
        labels: list[int] = []
        previous: int | None = None
        for word in enc.word_ids(i):
            if word is None or word == previous:
                labels.append(IGNORE_INDEX)
            else:
                labels.append(label2id[ex.tags[word]])
            previous = word
        item = {key: enc[key][i] for key in enc.keys()}
        item["labels"] = labels
        out.append(item)
    return out


@dataclass(frozen=True)
class QAFeatureMap:
    """For each QA feature: which example it came from and the context offsets of its tokens."""

    example_index: tuple[int, ...]
    offsets: tuple[tuple[tuple[int, int] | None, ...], ...]


def qa_features(
    examples: Sequence[QAExample],
    tokenizer: Any,
    max_length: int,
) -> tuple[FeatureList, QAFeatureMap]:
    """SQuAD-style windows over long contexts, with start/end token positions of the answer.

    Windows that do not contain the answer point at the first token (CLS), as in the
    reference run_qa example; the map keeps offsets so predictions can be turned into text.
    """
    stride = max(8, max_length // 3)
    pad_right = tokenizer.padding_side == "right"
    questions = [ex.question.lstrip() for ex in examples]
    contexts = [ex.context for ex in examples]
    enc = tokenizer(
        questions if pad_right else contexts,
        contexts if pad_right else questions,
        truncation="only_second" if pad_right else "only_first",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )
    context_id = 1 if pad_right else 0
    sample_map = enc["overflow_to_sample_mapping"]
    features = FeatureList()
    example_index: list[int] = []
    all_offsets: list[tuple[tuple[int, int] | None, ...]] = []
    model_keys = [
        k for k in enc.keys() if k not in ("offset_mapping", "overflow_to_sample_mapping")
    ]
    for i, offsets in enumerate(enc["offset_mapping"]):
        sequence_ids = enc.sequence_ids(i)
        ex = examples[sample_map[i]]
        answer = ex.answers[0]
        start_char, end_char = answer.start, answer.start + len(answer.text)
        context_tokens = [t for t, s in enumerate(sequence_ids) if s == context_id]
        first, last = context_tokens[0], context_tokens[-1]
        if offsets[first][0] > start_char or offsets[last][1] < end_char:
            start_pos = end_pos = 0
        else:
            start_pos = first
            while start_pos <= last and offsets[start_pos][0] <= start_char:
                start_pos += 1
            start_pos -= 1
            end_pos = last
            while end_pos >= first and offsets[end_pos][1] >= end_char:
                end_pos -= 1
            end_pos += 1
        item = {key: enc[key][i] for key in model_keys}
        item["start_positions"] = start_pos
        item["end_positions"] = end_pos
        features.append(item)
        example_index.append(sample_map[i])
        all_offsets.append(
            tuple(
                (int(o[0]), int(o[1])) if sequence_ids[t] == context_id else None
                for t, o in enumerate(offsets)
            )
        )
    return features, QAFeatureMap(tuple(example_index), tuple(all_offsets))


def causal_features(
    examples: Sequence[TextExample], tokenizer: Any, block_size: int
) -> FeatureList:
    """Concatenate all texts (EOS between them) and cut into blocks of ``block_size`` tokens.

    The tail shorter than a block is dropped, unless there is no full block at all.
    """
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for ex in examples:
        ids.extend(tokenizer(ex.text, add_special_tokens=False)["input_ids"])
        if eos is not None:
            ids.append(eos)
    blocks = [ids[i : i + block_size] for i in range(0, len(ids) - block_size + 1, block_size)]
    if not blocks and ids:
        blocks = [ids]
    out = FeatureList()
    for block in blocks:
        out.append({"input_ids": block, "attention_mask": [1] * len(block), "labels": list(block)})
    return out
