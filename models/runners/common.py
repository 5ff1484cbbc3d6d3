"""What the encoder runners share: model input rows, and the one loop that calls the model."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

# One row of model inputs, as plain token-id lists (input_ids, attention_mask, token_type_ids).
Features = dict[str, list[int]]

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


def length_sorted_chunks(lengths: Sequence[int], rows: int) -> list[list[int]]:
    """Indices grouped into chunks of at most ``rows``, shortest first, so each padded
    forward pass holds inputs of similar length."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    step = max(1, rows)
    return [order[s : s + step] for s in range(0, len(order), step)]


def forward_rows(
    model: Any, tokenizer: Any, rows: Sequence[Features], rows_per_pass: int
) -> Iterator[tuple[list[int], Any]]:
    """Run the model over ``rows``, ``rows_per_pass`` rows of similar length per padded pass;
    yield each pass's row indices and model output."""
    lengths = [len(features["input_ids"]) for features in rows]
    for chunk in length_sorted_chunks(lengths, rows_per_pass):
        padded = tokenizer.pad([rows[i] for i in chunk], return_tensors="pt")
        with torch.inference_mode():
            output = model(**{name: tensor.to(model.device) for name, tensor in padded.items()})
        yield chunk, output


def forward_windows(
    model: Any,
    tokenizer: Any,
    inputs: Sequence[Sequence[Features]],
    rows_per_pass: int,
    heads: Callable[[Any], Sequence[torch.Tensor]],
) -> list[list[list[np.ndarray]]]:
    """Run every window of every input (long texts have many) in passes of ``rows_per_pass``
    rows, which bounds memory; return, per input and window, the ``heads`` of the model
    output (token-level tensors) as arrays cut to the window's length."""
    rows = [features for windows in inputs for features in windows]
    outputs: list[list[np.ndarray]] = [[] for _ in rows]
    for chunk, output in forward_rows(model, tokenizer, rows, rows_per_pass):
        arrays = [tensor.float().cpu().numpy() for tensor in heads(output)]
        for position, i in enumerate(chunk):
            length = len(rows[i]["input_ids"])
            outputs[i] = [array[position, :length] for array in arrays]
    grouped: list[list[list[np.ndarray]]] = []
    start = 0
    for windows in inputs:
        grouped.append(outputs[start : start + len(windows)])
        start += len(windows)
    return grouped
