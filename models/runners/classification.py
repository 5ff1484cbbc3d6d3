"""Text classification: softmax (or sigmoid for multi-label / single-logit heads) over labels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from models.requests import ClassifyRequest
from models.results import ClassificationResult, LabelScore
from models.runners.common import (
    Features,
    forward_pass,
    input_names,
    model_max_length,
    row,
    softmax,
)
from models.specs import ModelSpec


class ClassificationRunner:
    """A :class:`~models.runners.base.Runner` for ``AutoModelForSequenceClassification``."""

    def __init__(self, model: Any, tokenizer: Any, spec: ModelSpec) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.max_length = model_max_length(model, tokenizer)
        self.inputs = input_names(model)
        config = model.config
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        self.sigmoid = config.problem_type == "multi_label_classification" or config.num_labels == 1

    def size_of(self, request: ClassifyRequest) -> int:
        return len(request.text)

    def prepare(self, request: ClassifyRequest) -> Features:
        request.validate()
        encoded = self.tokenizer(request.text, truncation=True, max_length=self.max_length)
        return row(encoded, self.inputs)

    def rows(self, prepared: Features) -> list[Features]:
        return [prepared]

    def forward(self, rows: Sequence[Features]) -> list[np.ndarray]:
        values = forward_pass(self.model, self.tokenizer, rows).logits.float().cpu().numpy()
        return list(values)

    def finish(
        self, request: ClassifyRequest, prepared: Features, outputs: Sequence[np.ndarray]
    ) -> ClassificationResult:
        (output,) = outputs
        probs = 1.0 / (1.0 + np.exp(-output)) if self.sigmoid else softmax(output)
        order = np.argsort(-probs)[: max(1, request.top_k)]
        scores = tuple(LabelScore(self.labels[j], float(probs[j])) for j in order)
        return ClassificationResult(
            label=scores[0].label,
            score=scores[0].score,
            scores=scores,
            model_id=self.spec.model_id,
        )
