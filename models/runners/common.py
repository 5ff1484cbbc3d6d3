"""What the encoder runners share: model input rows, and the one padded pass that calls the model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from models.runners.base import Features

__all__ = [
    "Features",
    "forward_pass",
    "input_names",
    "model_max_length",
    "per_row",
    "row",
    "softmax",
]

_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def model_max_length(model: Any, tokenizer: Any, default: int = 512) -> int:
    """The longest input the model takes (position embeddings), bounded by the tokenizer's."""
    limits = [
        getattr(model.config, "max_position_embeddings", None),
        getattr(tokenizer, "model_max_length", None),
    ]
    usable = [int(n) for n in limits if isinstance(n, int) and 0 < n < 1_000_000]
    return min(usable) if usable else default


def input_names(model: Any) -> tuple[str, ...]:
    """The tokenizer outputs the model's forward takes (offsets, overflow mapping and, for
    models with a single token type, token_type_ids are left out)."""
    if getattr(model.config, "type_vocab_size", 2) < 2:
        return tuple(name for name in _INPUT_NAMES if name != "token_type_ids")
    return _INPUT_NAMES


def row(encoded: Mapping[str, Any], names: Sequence[str], index: int | None = None) -> Features:
    """One row of ``encoded`` (a tokenizer output; ``index`` picks a window of a long input)."""
    return {
        name: list(encoded[name] if index is None else encoded[name][index])
        for name in names
        if name in encoded
    }


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def forward_pass(model: Any, tokenizer: Any, rows: Sequence[Features]) -> Any:
    """One padded forward pass of ``model`` over ``rows``; the model's output."""
    padded = tokenizer.pad(list(rows), return_tensors="pt")
    with torch.inference_mode():
        return model(**{name: tensor.to(model.device) for name, tensor in padded.items()})


def per_row(rows: Sequence[Features], heads: Sequence[torch.Tensor]) -> list[list[np.ndarray]]:
    """Token-level ``heads`` of a padded pass as arrays, per row, cut to the row's length."""
    arrays = [tensor.float().cpu().numpy() for tensor in heads]
    return [
        [array[position, : len(features["input_ids"])] for array in arrays]
        for position, features in enumerate(rows)
    ]
