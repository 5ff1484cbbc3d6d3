"""How many parameters a model has, found without loading it.

A local folder is measured by its safetensors headers (a few KB read per file), else estimated
from the size of its weight files and the dtype in its config; a hub model by the hub's metadata
(its safetensors parameter total), else by the headers of its safetensors files read over HTTP.
Each answers None when it can't tell; the training worker then counts the model's parameters
itself from its config before any weights load (``models.training.worker``).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

logger = logging.getLogger(__name__)

HUB_TIMEOUT_S = 15.0
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors format's own bound
_WEIGHT_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack"})
_DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "int8": 1}


def format_parameters(count: int) -> str:
    """A parameter count as people write it: 124M, 1.3B, 5.2K."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= size:
            value = count / size
            return f"{value:.1f}{suffix}".replace(".0" + suffix, suffix)
    return str(count)


def folder_parameters(folder: Path) -> int | None:
    """The parameters of the model saved in ``folder``; None when it holds no weights."""
    try:
        shards = _safetensors_files(folder)
        if shards:
            return sum(_safetensors_parameters(shard) for shard in shards)
        weight_bytes = sum(
            f.stat().st_size
            for f in folder.iterdir()
            if f.suffix in _WEIGHT_SUFFIXES and f.is_file()
        )
    except (OSError, ValueError) as exc:
        logger.info("could not measure the model in %s: %r", folder, exc)
        return None
    if not weight_bytes:
        return None
    return weight_bytes // _bytes_per_parameter(folder)


def _safetensors_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map") or {}
        names = sorted({str(name) for name in weight_map.values()})
        files = [folder / name for name in names]
        if any(Path(name).name != name for name in names):
            raise ValueError("a shard outside the model folder")
        return files
    return sorted(f for f in folder.glob("*.safetensors") if f.is_file())


def _safetensors_parameters(path: Path) -> int:
    """The number of values in a safetensors file, from its header."""
    with open(path, "rb") as stream:
        size = int.from_bytes(stream.read(8), "little")
        if not 0 < size <= _MAX_HEADER_BYTES:
            raise ValueError(f"{path.name} has no safetensors header")
        header = json.loads(stream.read(size))
    total = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        total += math.prod(int(n) for n in entry["shape"])
    return total


def _bytes_per_parameter(folder: Path) -> int:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 4
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "float32")
    return _DTYPE_BYTES.get(dtype.removeprefix("torch."), 4)


def hub_model_parameters(repo_id: str) -> int | None:
    """A hub model's parameters from the hub's metadata; None when offline or not stated."""
    if _offline():
        return None
    try:
        from huggingface_hub import HfApi

        api = HfApi()
        info = api.model_info(repo_id, expand=["safetensors"], timeout=HUB_TIMEOUT_S)
        if info.safetensors is not None and info.safetensors.total:
            return int(info.safetensors.total)
        metadata = api.get_safetensors_metadata(repo_id)
        return int(sum(metadata.parameter_count.values())) or None
    except Exception as exc:  # unreachable, not found, no safetensors: the worker counts
        logger.info("no parameter count from the hub for %s: %r", repo_id, exc)
        return None


def _offline() -> bool:
    return any(
        os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
