"""NER: per-token softmax over overlapping windows of long texts, "simple" aggregation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.ner import TokenPrediction, aggregate_simple, merge_windows
from models.requests import NERRequest
from models.results import NERResult
from models.runners.common import (
    Features,
    forward_pass,
    input_names,
    model_max_length,
    per_row,
    row,
    softmax,
)
from models.specs import ModelSpec


@dataclass(frozen=True)
class TextWindows:
    """One text's tokenizer output: its windows, each a row of model inputs."""

    encoded: Any
    rows: list[Features]


class TokenClassificationRunner:
    """A :class:`~models.runners.base.Runner` for ``AutoModelForTokenClassification``."""

    def __init__(self, model: Any, tokenizer: Any, spec: ModelSpec) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.max_length = model_max_length(model, tokenizer)
        self.stride = min(128, self.max_length // 4)
        self.inputs = input_names(model)
        self.id2label = {int(k): v for k, v in model.config.id2label.items()}

    def size_of(self, request: NERRequest) -> int:
        return len(request.text)

    def prepare(self, request: NERRequest) -> TextWindows:
        request.validate()
        encoded = self.tokenizer(
            request.text,
            truncation=True,
            max_length=self.max_length,
            stride=self.stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        windows = range(len(encoded["input_ids"]))
        return TextWindows(encoded, [row(encoded, self.inputs, w) for w in windows])

    def rows(self, prepared: TextWindows) -> list[Features]:
        return prepared.rows

    def forward(self, rows: Sequence[Features]) -> list[np.ndarray]:
        output = forward_pass(self.model, self.tokenizer, rows)
        return [logits for (logits,) in per_row(rows, (output.logits,))]

    def finish(
        self, request: NERRequest, prepared: TextWindows, output: Sequence[np.ndarray]
    ) -> NERResult:
        encoded = prepared.encoded
        windows: list[list[TokenPrediction]] = []
        for w, logits in enumerate(output):
            probs = softmax(logits)
            tokens = self.tokenizer.convert_ids_to_tokens(encoded["input_ids"][w])
            offsets = encoded["offset_mapping"][w]
            special = encoded["special_tokens_mask"][w]
            attention = encoded["attention_mask"][w]
            windows.append(
                [
                    TokenPrediction(tokens[t], offsets[t][0], offsets[t][1], probs[t])
                    for t in range(len(tokens))
                    if attention[t] and not special[t]
                ]
            )
        entities = aggregate_simple(
            merge_windows(windows),
            self.id2label,
            self.tokenizer.convert_tokens_to_string,
            text=request.text,
        )
        return NERResult(entities=tuple(entities), model_id=self.spec.model_id)
