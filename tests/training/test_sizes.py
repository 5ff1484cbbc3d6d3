"""models.training.sizes: a model's parameters, told without loading it (issue 10, item 4)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from models.training.sizes import folder_parameters, format_parameters, hub_model_parameters


def test_a_folder_is_measured_by_its_safetensors_headers(tiny_sentiment_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_sentiment_dir)
    assert folder_parameters(tiny_sentiment_dir) == sum(p.numel() for p in model.parameters())


def test_other_weights_are_estimated_from_their_size_and_dtype(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(bytes(4000))
    assert folder_parameters(tmp_path) == 1000  # float32 unless the config says otherwise
    (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": "float16"}))
    assert folder_parameters(tmp_path) == 2000
    empty = tmp_path / "empty"
    empty.mkdir()
    assert folder_parameters(empty) is None
    (empty / "model.safetensors").write_bytes(b"not a safetensors file")
    assert folder_parameters(empty) is None


def test_sharded_safetensors_are_summed(tiny_sentiment_dir: Path, tmp_path: Path) -> None:
    one = folder_parameters(tiny_sentiment_dir)
    assert one is not None
    shutil.copy(tiny_sentiment_dir / "model.safetensors", tmp_path / "a.safetensors")
    shutil.copy(tiny_sentiment_dir / "model.safetensors", tmp_path / "b.safetensors")
    index = {"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert folder_parameters(tmp_path) == 2 * one
    outside = {"weight_map": {"x": "../a.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(outside))
    assert folder_parameters(tmp_path) is None


def test_hub_models_by_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import ModelInfo

    assert hub_model_parameters("gpt2") is None  # offline (the test session): unknown
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)

    def model_info(self: Any, repo_id: str, **kwargs: Any) -> ModelInfo:
        assert kwargs["expand"] == ["safetensors"]
        return ModelInfo(
            id=repo_id, safetensors={"parameters": {"F32": 137022720}, "total": 137022720}
        )

    monkeypatch.setattr(HfApi, "model_info", model_info)
    assert hub_model_parameters("gpt2") == 137_022_720

    def unreachable(self: Any, repo_id: str, **kwargs: Any) -> ModelInfo:
        raise ConnectionError("no network")

    monkeypatch.setattr(HfApi, "model_info", unreachable)
    assert hub_model_parameters("gpt2") is None


def test_counts_read_as_people_write_them() -> None:
    assert [format_parameters(n) for n in (950, 5_200, 124_000_000, 1_300_000_000)] == [
        "950",
        "5.2K",
        "124M",
        "1.3B",
    ]
