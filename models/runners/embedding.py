"""Sentence embeddings: pooled token states of an encoder, normalised to unit length.

The pooling follows the checkpoint's sentence-transformers configuration when it has one
(``modules.json`` naming a ``Pooling`` module whose ``config.json`` picks mean, CLS or max
pooling, and ``sentence_bert_config.json``'s ``max_seq_length``), so vectors equal
``SentenceTransformer(model).encode(texts, normalize_embeddings=True)``; without one, mean
pooling over the model's full input length. Vectors are always normalised: the index compares
them by cosine.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from models.requests import EmbedRequest
from models.results import EmbeddingResult
from models.runners.common import Features, input_names, model_max_length, row
from models.specs import ModelSpec

log = logging.getLogger(__name__)

PoolingMode = Literal["mean", "cls", "max"]


@dataclass(frozen=True)
class PoolingConfig:
    """How token states become one vector, and the longest input (None: the model's own)."""

    mode: PoolingMode = "mean"
    max_seq_length: int | None = None


def _read_json(find: Callable[[str], Path | None], name: str) -> Any:
    """The JSON in the model's file ``name``, or None when it has none (or it is unreadable)."""
    path = find(name)
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("could not read %s; using defaults", path)
        return None


def pooling_config(find: Callable[[str], Path | None]) -> PoolingConfig:
    """The sentence-transformers configuration found by ``find`` (a file name in the model's
    folder or repository -> its local path, or None)."""
    modules = _read_json(find, "modules.json")
    mode: PoolingMode = "mean"
    if isinstance(modules, list):
        for module in modules:
            if not isinstance(module, dict) or not str(module.get("type", "")).endswith(".Pooling"):
                continue
            folder = str(module.get("path") or "").strip("/")
            config = _read_json(find, f"{folder}/config.json" if folder else "config.json")
            if config is None:
                break
            if config.get("pooling_mode_cls_token"):
                mode = "cls"
            elif config.get("pooling_mode_max_tokens"):
                mode = "max"
            elif not config.get("pooling_mode_mean_tokens", True):
                log.warning("unsupported pooling mode in %s; using mean pooling", config)
            break
    sentence = _read_json(find, "sentence_bert_config.json")
    length = sentence.get("max_seq_length") if isinstance(sentence, dict) else None
    return PoolingConfig(mode, int(length) if isinstance(length, int) and length > 0 else None)


def _finder(model: Any, spec: ModelSpec) -> Callable[[str], Path | None]:
    """Finds a file of the model: in its local folder, else from the hub (cache first)."""
    location = Path(str(getattr(model, "name_or_path", "") or spec.model_id)).expanduser()
    if location.is_dir():
        return lambda name: location / name

    def from_hub(name: str) -> Path | None:
        try:
            from huggingface_hub import hf_hub_download

            from models.loading import hub_offline

            return Path(
                hf_hub_download(
                    spec.model_id,
                    name,
                    revision=spec.revision,
                    local_files_only=hub_offline(),
                )
            )
        except Exception:  # absent from the repository, or the hub unreachable: defaults
            return None

    return from_hub


def model_pooling(model: Any, spec: ModelSpec) -> PoolingConfig:
    """How ``model`` (serving ``spec``) pools its token states into one vector."""
    return pooling_config(_finder(model, spec))


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: PoolingMode) -> torch.Tensor:
    """One unit-length vector per row of ``hidden`` (batch, tokens, dim) under ``mask``."""
    if mode == "cls":
        pooled = hidden[:, 0]
    elif mode == "max":
        pooled = hidden.masked_fill(~mask.bool().unsqueeze(-1), float("-inf")).max(dim=1).values
    else:
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled.float(), p=2, dim=-1)


class EmbeddingRunner:
    """A :class:`~models.runners.base.Runner` for sentence embeddings (``AutoModel``)."""

    def __init__(self, model: Any, tokenizer: Any, spec: ModelSpec) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.config = model_pooling(model, spec)
        limit = model_max_length(model, tokenizer)
        self.max_length = min(self.config.max_seq_length or limit, limit)
        self.inputs = input_names(model)
        self.dimension = int(model.config.hidden_size)

    def size_of(self, request: EmbedRequest) -> int:
        return sum(len(text) for text in request.texts)

    def prepare(self, request: EmbedRequest) -> list[Features]:
        request.validate()
        encoded = self.tokenizer(list(request.texts), truncation=True, max_length=self.max_length)
        return [row(encoded, self.inputs, i) for i in range(len(request.texts))]

    def rows(self, prepared: list[Features]) -> list[Features]:
        return prepared

    def forward(self, rows: Sequence[Features]) -> list[np.ndarray]:
        padded = self.tokenizer.pad(list(rows), return_tensors="pt")
        with torch.inference_mode():
            output = self.model(
                **{name: tensor.to(self.model.device) for name, tensor in padded.items()}
            )
        # The pass is padded to its longest row: the attention mask marks each row's own tokens.
        mask = padded["attention_mask"].to(output.last_hidden_state.device)
        return list(pool(output.last_hidden_state, mask, self.config.mode).cpu().numpy())

    def finish(
        self, request: EmbedRequest, prepared: list[Features], outputs: Sequence[np.ndarray]
    ) -> EmbeddingResult:
        little_endian = np.asarray(outputs, dtype=np.float32).astype("<f4", copy=False)
        return EmbeddingResult(
            vectors=tuple(vector.tobytes() for vector in little_endian),
            dimension=self.dimension,
            model_id=self.spec.model_id,
        )
