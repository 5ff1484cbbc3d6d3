"""Extractive QA over windows of the context, postprocessed as transformers 4.x's pipeline."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.errors import InvalidInput
from models.qa import QAWindow, build_p_mask, encode_qa, postprocess_qa
from models.requests import QARequest
from models.results import QAResult
from models.runners.common import (
    Features,
    forward_pass,
    input_names,
    model_max_length,
    per_row,
    row,
)
from models.specs import ModelSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QAWindows:
    """One question and context's tokenizer output: its windows, each a row of model inputs.

    At most ``ModelSpec.max_windows`` windows are kept; ``read_chars`` (set when some were
    dropped) is where the last kept window ends in the context.
    """

    encoded: Any
    rows: list[Features]
    read_chars: int | None = None


# Start and end logits of one window, cut to its length.
SpanLogits = tuple[np.ndarray, np.ndarray]


class QuestionAnsweringRunner:
    """A :class:`~models.runners.base.Runner` for ``AutoModelForQuestionAnswering``."""

    def __init__(self, model: Any, tokenizer: Any, spec: ModelSpec) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.max_seq_len = min(spec.max_seq_len, model_max_length(model, tokenizer))
        self.doc_stride = min(spec.doc_stride, self.max_seq_len // 2)
        self.inputs = input_names(model)
        if getattr(tokenizer, "padding_side", "right") != "right":
            raise ValueError("question-answering needs a tokenizer that pads on the right")

    def size_of(self, request: QARequest) -> int:
        return len(request.context)

    def prepare(self, request: QARequest) -> QAWindows:
        request.validate()
        try:
            encoded = encode_qa(
                self.tokenizer,
                request.question,
                request.context,
                max_seq_len=self.max_seq_len,
                doc_stride=self.doc_stride,
            )
        except Exception as exc:
            # e.g. a question so long that no context fits in a window. The tokenizer's own
            # words go to the log; the user gets what to do.
            log.info("QA tokenization failed for %s: %s", self.spec.model_id, exc)
            raise InvalidInput(
                "This question and context cannot be read together by the model "
                f"({type(exc).__name__}); try a shorter question."
            ) from exc
        total = len(encoded["input_ids"])
        kept = min(total, self.spec.max_windows)
        read_chars = None
        if kept < total:
            # Windows are in context order: the last kept one ends where reading stopped.
            last = kept - 1
            read_chars = max(
                end
                for (_, end), seq in zip(
                    encoded["offset_mapping"][last], encoded.sequence_ids(last), strict=True
                )
                if seq == 1
            )
        return QAWindows(encoded, [row(encoded, self.inputs, w) for w in range(kept)], read_chars)

    def rows(self, prepared: QAWindows) -> list[Features]:
        return prepared.rows

    def forward(self, rows: Sequence[Features]) -> list[SpanLogits]:
        output = forward_pass(self.model, self.tokenizer, rows)
        return [
            (start, end) for start, end in per_row(rows, (output.start_logits, output.end_logits))
        ]

    def finish(
        self, request: QARequest, prepared: QAWindows, output: Sequence[SpanLogits]
    ) -> QAResult:
        encoded = prepared.encoded
        windows = []
        for w, (start_logits, end_logits) in enumerate(output):
            input_ids = encoded["input_ids"][w]
            sequence_ids = encoded.sequence_ids(w)
            windows.append(
                QAWindow(
                    start_logits=start_logits[None],
                    end_logits=end_logits[None],
                    p_mask=build_p_mask(sequence_ids, input_ids, self.tokenizer.cls_token_id)[None],
                    attention_mask=np.asarray(encoded["attention_mask"][w])[None],
                    offsets=[tuple(o) for o in encoded["offset_mapping"][w]],
                    word_ids=encoded.word_ids(w),
                    sequence_ids=sequence_ids,
                )
            )
        answers = postprocess_qa(
            windows,
            request.context,
            top_k=max(1, request.top_k),
            handle_impossible_answer=request.handle_impossible_answer,
            max_answer_len=request.max_answer_len or self.spec.max_answer_len,
        )
        return QAResult(
            answers=tuple(answers), model_id=self.spec.model_id, read_chars=prepared.read_chars
        )
