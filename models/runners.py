"""Encoder task runners: batched preprocess -> forward -> postprocess on the executor thread.

Each runner's ``process`` takes a batch of requests and returns one result or exception per
request, in order; a request that cannot be tokenized fails alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from models.errors import InvalidInput
from models.ner import TokenPrediction, aggregate_simple, merge_windows, softmax
from models.qa import QAWindow, build_p_mask, encode_qa, postprocess_qa
from models.results import (
    Answer,
    ClassificationResult,
    LabelScore,
    NERResult,
    QAResult,
)
from models.specs import ModelSpec

log = logging.getLogger(__name__)


def model_max_length(model: Any, tokenizer: Any, default: int = 512) -> int:
    """The longest input the model takes (position embeddings), bounded by the tokenizer's."""
    limits = [
        getattr(model.config, "max_position_embeddings", None),
        getattr(tokenizer, "model_max_length", None),
    ]
    usable = [int(n) for n in limits if isinstance(n, int) and 0 < n < 1_000_000]
    return min(usable) if usable else default


def _forward(model: Any, inputs: dict[str, torch.Tensor]) -> Any:
    with torch.inference_mode():
        return model(**{k: v.to(model.device) for k, v in inputs.items()})


def _model_inputs(model: Any, encoded: Any) -> dict[str, torch.Tensor]:
    # Drop tokenizer outputs the model's forward does not take (offsets, overflow mapping...).
    wanted = ("input_ids", "attention_mask", "token_type_ids")
    inputs = {k: encoded[k] for k in wanted if k in encoded}
    if "token_type_ids" in inputs and getattr(model.config, "type_vocab_size", 2) < 2:
        inputs.pop("token_type_ids")
    return inputs


def length_sorted_chunks(lengths: Sequence[int], rows: int) -> list[list[int]]:
    """Indices grouped into chunks of at most ``rows``, shortest first, so each padded
    forward pass holds inputs of similar length."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    step = max(1, rows)
    return [order[s : s + step] for s in range(0, len(order), step)]


class _Pending:
    """Marker for a result slot not computed yet."""


_PENDING: Any = _Pending()


@dataclass(frozen=True)
class ClassifyRequest:
    text: str
    top_k: int = 1


class ClassificationRunner:
    """Text classification: softmax (or sigmoid for multi-label / single-logit heads)."""

    def __init__(self, model: Any, tokenizer: Any, spec: ModelSpec) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.max_length = model_max_length(model, tokenizer)
        config = model.config
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        self.sigmoid = config.problem_type == "multi_label_classification" or config.num_labels == 1

    @staticmethod
    def size_of(request: ClassifyRequest) -> int:
        return len(request.text)

    def process(
        self, requests: Sequence[ClassifyRequest]
    ) -> list[ClassificationResult | Exception]:
        results: list[ClassificationResult | Exception] = [
            InvalidInput("The text is empty; give some text to analyse.")
            if not r.text.strip()
            else _PENDING
            for r in requests
        ]
        todo = [i for i, r in enumerate(results) if r is _PENDING]
        if not todo:
            return results
        lengths = [len(requests[i].text) for i in todo]
        for chunk in length_sorted_chunks(lengths, self.spec.forward_batch):
            indices = [todo[c] for c in chunk]
            encoded = self.tokenizer(
                [requests[i].text for i in indices],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            output = _forward(self.model, _model_inputs(self.model, encoded))
            logits = output.logits.float().cpu().numpy()
            probs = 1.0 / (1.0 + np.exp(-logits)) if self.sigmoid else softmax(logits)
            for row, i in enumerate(indices):
                order = np.argsort(-probs[row])[: max(1, requests[i].top_k)]
                scores = tuple(LabelScore(self.labels[j], float(probs[row, j])) for j in order)
                results[i] = ClassificationResult(
                    label=scores[0].label,
                    score=scores[0].score,
                    scores=scores,
                    model_id=self.spec.model_id,
                )
        return results


class TokenClassificationRunner:
    """NER: per-token softmax, windows with overlap for long texts, "simple" aggregation."""

    def __init__(self, model: Any, tokenizer: Any, spec: ModelSpec) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.max_length = model_max_length(model, tokenizer)
        self.stride = min(128, self.max_length // 4)
        self.id2label = {int(k): v for k, v in model.config.id2label.items()}

    @staticmethod
    def size_of(text: str) -> int:
        return len(text)

    def process(self, texts: Sequence[str]) -> list[NERResult | Exception]:
        results: list[Any] = [
            InvalidInput("The text is empty; give some text to analyse.")
            if not text.strip()
            else _PENDING
            for text in texts
        ]
        todo = [i for i, r in enumerate(results) if r is _PENDING]
        if not todo:
            return results
        lengths = [len(texts[i]) for i in todo]
        for chunk in length_sorted_chunks(lengths, self.spec.forward_batch):
            indices = [todo[c] for c in chunk]
            for i, result in zip(indices, self._run([texts[i] for i in indices]), strict=True):
                results[i] = result
        return results

    def _run(self, texts: list[str]) -> list[NERResult]:
        encoded = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            stride=self.stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            return_tensors="pt",
        )
        windows_of = encoded["overflow_to_sample_mapping"].tolist()
        probs = softmax(self._forward_windows(_model_inputs(self.model, encoded)))
        per_sample: dict[int, list[list[TokenPrediction]]] = {}
        offsets = encoded["offset_mapping"].tolist()
        special = encoded["special_tokens_mask"].tolist()
        attention = encoded["attention_mask"].tolist()
        ids = encoded["input_ids"].tolist()
        for w, sample in enumerate(windows_of):
            tokens = self.tokenizer.convert_ids_to_tokens(ids[w])
            window = [
                TokenPrediction(tokens[t], offsets[w][t][0], offsets[w][t][1], probs[w, t])
                for t in range(len(tokens))
                if attention[w][t] and not special[w][t]
            ]
            per_sample.setdefault(sample, []).append(window)
        results = []
        for sample, text in enumerate(texts):
            tokens = merge_windows(per_sample.get(sample, []))
            entities = aggregate_simple(
                tokens, self.id2label, self.tokenizer.convert_tokens_to_string, text=text
            )
            results.append(NERResult(entities=tuple(entities), model_id=self.spec.model_id))
        return results

    def _forward_windows(self, inputs: dict[str, torch.Tensor]) -> np.ndarray:
        # Long texts make many windows: cap rows per forward pass to bound memory.
        rows = inputs["input_ids"].shape[0]
        step = max(1, self.spec.forward_batch)
        chunks = [
            _forward(self.model, {k: v[s : s + step] for k, v in inputs.items()})
            .logits.float()
            .cpu()
            .numpy()
            for s in range(0, rows, step)
        ]
        return np.concatenate(chunks, axis=0)


@dataclass(frozen=True)
class QARequest:
    question: str
    context: str
    top_k: int = 1
    handle_impossible_answer: bool = False
    max_answer_len: int | None = None


class QuestionAnsweringRunner:
    """Extractive QA over windows of the context, postprocessed as the 4.x pipeline."""

    def __init__(self, model: Any, tokenizer: Any, spec: ModelSpec) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.max_seq_len = min(spec.max_seq_len, model_max_length(model, tokenizer))
        self.doc_stride = min(spec.doc_stride, self.max_seq_len // 2)
        if getattr(tokenizer, "padding_side", "right") != "right":
            raise ValueError("question-answering needs a tokenizer that pads on the right")

    @staticmethod
    def size_of(request: QARequest) -> int:
        return len(request.context)

    def _encode(self, request: QARequest) -> Any:
        if not request.question.strip():
            raise InvalidInput("The question is empty; ask something.")
        if not request.context.strip():
            raise InvalidInput("The context is empty; there is nothing to search for an answer.")
        try:
            encoded = encode_qa(
                self.tokenizer,
                request.question,
                request.context,
                max_seq_len=self.max_seq_len,
                doc_stride=self.doc_stride,
            )
        except Exception as exc:
            # e.g. a question so long that no context fits in a window.
            raise InvalidInput(
                f"This question and context cannot be processed ({str(exc).splitlines()[0][:120]}); "
                "try a shorter question."
            ) from exc
        return encoded

    def process(self, requests: Sequence[QARequest]) -> list[QAResult | Exception]:
        results: list[Any] = [_PENDING] * len(requests)
        encodings: dict[int, Any] = {}
        for i, request in enumerate(requests):
            try:
                encodings[i] = self._encode(request)
            except InvalidInput as exc:
                results[i] = exc
        if not encodings:
            return results
        # Every window of every request, sorted by length and run forward_batch rows at a time.
        rows: list[tuple[int, int]] = []
        features: list[dict[str, list[int]]] = []
        for i, encoded in encodings.items():
            for w in range(len(encoded["input_ids"])):
                rows.append((i, w))
                features.append(
                    {
                        k: encoded[k][w]
                        for k in ("input_ids", "attention_mask", "token_type_ids")
                        if k in encoded
                    }
                )
        start_logits, end_logits = self._forward(features)
        windows: dict[int, list[QAWindow]] = {}
        for row, (i, w) in enumerate(rows):
            encoded = encodings[i]
            input_ids = encoded["input_ids"][w]
            n = len(input_ids)
            sequence_ids = encoded.sequence_ids(w)
            windows.setdefault(i, []).append(
                QAWindow(
                    start_logits=start_logits[row, :n][None],
                    end_logits=end_logits[row, :n][None],
                    p_mask=build_p_mask(sequence_ids, input_ids, self.tokenizer.cls_token_id)[None],
                    attention_mask=np.asarray(encoded["attention_mask"][w])[None],
                    offsets=[tuple(o) for o in encoded["offset_mapping"][w]],
                    word_ids=encoded.word_ids(w),
                    sequence_ids=sequence_ids,
                )
            )
        for i, request in enumerate(requests):
            if i not in windows:
                continue
            answers: list[Answer] = postprocess_qa(
                windows[i],
                request.context,
                top_k=max(1, request.top_k),
                handle_impossible_answer=request.handle_impossible_answer,
                max_answer_len=request.max_answer_len or self.spec.max_answer_len,
            )
            results[i] = QAResult(answers=tuple(answers), model_id=self.spec.model_id)
        return results

    def _forward(self, features: list[dict[str, list[int]]]) -> tuple[np.ndarray, np.ndarray]:
        """Start and end logits per window (rows in ``features`` order, padded to the longest)."""
        width = max(len(f["input_ids"]) for f in features)
        starts = np.zeros((len(features), width), dtype=np.float32)
        ends = np.zeros((len(features), width), dtype=np.float32)
        lengths = [len(f["input_ids"]) for f in features]
        for chunk in length_sorted_chunks(lengths, self.spec.forward_batch):
            padded = self.tokenizer.pad([features[i] for i in chunk], return_tensors="pt")
            out = _forward(self.model, _model_inputs(self.model, padded))
            n = padded["input_ids"].shape[1]
            starts[chunk, :n] = out.start_logits.float().cpu().numpy()
            ends[chunk, :n] = out.end_logits.float().cpu().numpy()
        return starts, ends
