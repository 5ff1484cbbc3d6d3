"""Task runners on tiny random-weight models, through the registry."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from models.qa import QAWindow, build_p_mask, encode_qa, postprocess_qa
from models.registry import ModelRegistry
from models.requests import QARequest
from models.runners import process_batch
from models.runners.question_answering import QuestionAnsweringRunner
from models.specs import Task, default_spec
from tests.support.models import SST2_LABELS

SENTENCES = [
    "a gripping , beautifully shot film",
    "the plot is thin and the jokes are stale",
    "it 's fine",
    "one of the best performances of the year , full of warmth and wit and surprise",
    "dull",
    "i would watch it again tomorrow",
]


async def test_classify_returns_sst2_labels_and_top_k(registry: ModelRegistry) -> None:
    result = await registry.classify("a lovely , moving film", top_k=2)
    assert result.label in SST2_LABELS
    assert [s.label for s in result.scores] in (list(SST2_LABELS), list(reversed(SST2_LABELS)))
    assert sum(s.score for s in result.scores) == pytest.approx(1.0, abs=1e-5)
    assert result.scores[0].score >= result.scores[1].score
    assert (result.label, result.score) == (result.scores[0].label, result.scores[0].score)
    one = await registry.classify("a lovely , moving film")
    assert len(one.scores) == 1


async def test_batched_classification_equals_one_at_a_time(registry: ModelRegistry) -> None:
    alone = [await registry.classify(s, top_k=2) for s in SENTENCES]
    together = await asyncio.gather(*(registry.classify(s, top_k=2) for s in SENTENCES))
    for a, b in zip(alone, together, strict=True):
        assert a.label == b.label
        assert a.score == pytest.approx(b.score, abs=1e-5)


async def test_ner_entities_point_into_the_text(registry: ModelRegistry) -> None:
    text = "John Smith lives in New York, and works for Google in Mountain View."
    result = await registry.ner(text)
    assert result.entities, "random weights still label some tokens"
    for entity in result.entities:
        assert 0 <= entity.start < entity.end <= len(text)
        assert text[entity.start : entity.end] == entity.word
        assert entity.entity_group in {"PER", "ORG", "LOC", "MISC"}
        assert 0.0 < entity.score <= 1.0
    ends = [e.end for e in result.entities]
    assert ends == sorted(ends)


async def test_ner_handles_text_longer_than_the_model_window(registry: ModelRegistry) -> None:
    words = [f"word{i}" for i in range(700)]  # > 512 tokens
    text = " ".join(words)
    result = await registry.ner(text)
    assert max(e.end for e in result.entities) > len(text) * 0.8
    for entity in result.entities:
        assert text[entity.start : entity.end] == entity.word


async def test_batched_ner_equals_one_at_a_time(registry: ModelRegistry) -> None:
    alone = [await registry.ner(s) for s in SENTENCES]
    together = await asyncio.gather(*(registry.ner(s) for s in SENTENCES))
    for a, b in zip(alone, together, strict=True):
        assert [(e.start, e.end, e.entity_group) for e in a.entities] == [
            (e.start, e.end, e.entity_group) for e in b.entities
        ]


def _long_context(sentences: int = 120) -> str:
    filler = [
        f"In year {1900 + i} the village council met {i % 7 + 2} times and discussed the harvest."
        for i in range(sentences)
    ]
    return " ".join(filler)


async def test_qa_over_a_context_several_windows_long(registry: ModelRegistry, tiny_qa_dir) -> None:
    context = _long_context()
    question = "How many times did the council meet?"
    tokenizer = AutoTokenizer.from_pretrained(tiny_qa_dir)
    encoded = encode_qa(tokenizer, question, context)
    assert len(encoded["input_ids"]) >= 4, "the context must span several windows"
    assert max(len(ids) for ids in encoded["input_ids"]) <= 384

    result = await registry.answer(question, context, top_k=3)
    assert 1 <= len(result.answers) <= 3
    scores = [a.score for a in result.answers]
    assert scores == sorted(scores, reverse=True)
    for answer in result.answers:
        assert answer.text == context[answer.start : answer.end]
        assert answer.text.strip()

    # The same windows run one at a time, unpadded (as the 4.x pipeline did), give the same
    # answers as the registry's padded batch.
    model = AutoModelForQuestionAnswering.from_pretrained(tiny_qa_dir).eval()
    windows = []
    for w in range(len(encoded["input_ids"])):
        ids = encoded["input_ids"][w]
        with torch.inference_mode():
            out = model(
                input_ids=torch.tensor([ids]),
                attention_mask=torch.tensor([encoded["attention_mask"][w]]),
                token_type_ids=torch.tensor([encoded["token_type_ids"][w]]),
            )
        windows.append(
            QAWindow(
                start_logits=out.start_logits.numpy(),
                end_logits=out.end_logits.numpy(),
                p_mask=build_p_mask(encoded.sequence_ids(w), ids, tokenizer.cls_token_id)[None],
                attention_mask=np.asarray(encoded["attention_mask"][w])[None],
                offsets=encoded["offset_mapping"][w],
                word_ids=encoded.word_ids(w),
                sequence_ids=encoded.sequence_ids(w),
            )
        )
    expected = postprocess_qa(windows, context, top_k=3)
    assert [(a.start, a.end) for a in expected] == [(a.start, a.end) for a in result.answers]
    for a, b in zip(expected, result.answers, strict=True):
        assert a.score == pytest.approx(b.score, rel=1e-3)


class _PointingQAModel:
    """A stand-in QA model whose start/end logits peak on one token id: the answer is known."""

    def __init__(self, start_id: int, end_id: int) -> None:
        self.start_id = start_id
        self.end_id = end_id
        self.config = SimpleNamespace(max_position_embeddings=512, type_vocab_size=2)
        self.device = torch.device("cpu")

    def __call__(self, input_ids: torch.Tensor, **_: Any) -> SimpleNamespace:
        start = (input_ids == self.start_id).float() * 10.0
        end = (input_ids == self.end_id).float() * 10.0
        return SimpleNamespace(start_logits=start, end_logits=end)


def test_answer_in_a_late_window_maps_to_original_characters(tiny_qa_dir) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_qa_dir)
    context = (
        _long_context(100)
        + " The treasure is buried under the Old Lighthouse. "
        + (_long_context(10))
    )
    start_id = tokenizer.convert_tokens_to_ids("old")
    end_id = tokenizer.convert_tokens_to_ids("lighthouse")
    spec = default_spec(Task.QA, str(tiny_qa_dir))
    runner = QuestionAnsweringRunner(_PointingQAModel(start_id, end_id), tokenizer, spec)
    [result] = process_batch(runner, [QARequest("Where is the treasure?", context)])
    best = result.best
    assert best is not None
    assert best.text == "Old Lighthouse"
    assert context[best.start : best.end] == "Old Lighthouse"
    assert best.start == context.index("Old Lighthouse")


def test_qa_bad_request_fails_alone(tiny_qa_dir) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_qa_dir)
    spec = default_spec(Task.QA, str(tiny_qa_dir))
    start_id = tokenizer.convert_tokens_to_ids("bob")
    runner = QuestionAnsweringRunner(_PointingQAModel(start_id, start_id), tokenizer, spec)
    good, bad = process_batch(
        runner, [QARequest("Who?", "Alice met Bob."), QARequest("Who?", "   ")]
    )
    assert not isinstance(good, Exception) and good.best is not None
    assert good.best.text == "Bob"
    assert isinstance(bad, Exception) and "context is empty" in str(bad)


class _NoModel:
    """A model that must not be called: only its config is read."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("only forward may call the model")


def test_forward_is_the_only_model_call(tiny_sentiment_dir) -> None:
    from transformers import AutoConfig

    from models.requests import ClassifyRequest
    from models.runners.classification import ClassificationRunner

    class FixedLogits(ClassificationRunner):
        """Another runtime: replaces forward alone (here, logits from a table)."""

        def forward(self, batch):  # type: ignore[no-untyped-def]
            self.seen = list(batch)
            return [np.array([2.0, -1.0]) for _ in batch]

    config = AutoConfig.from_pretrained(tiny_sentiment_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_sentiment_dir)
    spec = default_spec(Task.SENTIMENT, str(tiny_sentiment_dir))
    runner = FixedLogits(_NoModel(config), tokenizer, spec)
    good, empty = process_batch(
        runner, [ClassifyRequest("a fine film", top_k=2), ClassifyRequest("  ")]
    )
    assert not isinstance(good, Exception)
    assert good.label == SST2_LABELS[0] and good.scores[1].label == SST2_LABELS[1]
    assert good.score == pytest.approx(1 / (1 + np.exp(-3.0)))
    assert isinstance(empty, Exception) and "empty" in str(empty)
    # Only the valid request reached forward, as token ids.
    [features] = runner.seen
    assert tokenizer.decode(features["input_ids"], skip_special_tokens=True) == "a fine film"
