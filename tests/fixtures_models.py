"""Session-scoped pytest fixtures returning tiny model checkpoint folders.

Use with ``pytest_plugins = ["tests.fixtures_models"]`` in a conftest, or import the fixtures.
Every fixture sets HF_HUB_OFFLINE=1 first: tests never reach the hub.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import tiny_models


@pytest.fixture(scope="session")
def tiny_models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session folder holding the tiny checkpoints (also a valid allowed model root)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tiny_models_root: Path) -> Path:
    return tiny_models.build_tiny_gpt2(tiny_models_root / "tiny-gpt2")


@pytest.fixture(scope="session")
def tiny_chat_gpt2_dir(tiny_models_root: Path) -> Path:
    return tiny_models.build_tiny_chat_gpt2(tiny_models_root / "tiny-chat-gpt2")


@pytest.fixture(scope="session")
def tiny_sentiment_dir(tiny_models_root: Path) -> Path:
    return tiny_models.build_tiny_sentiment(tiny_models_root / "tiny-sentiment")


@pytest.fixture(scope="session")
def tiny_ner_dir(tiny_models_root: Path) -> Path:
    return tiny_models.build_tiny_ner(tiny_models_root / "tiny-ner")


@pytest.fixture(scope="session")
def tiny_qa_dir(tiny_models_root: Path) -> Path:
    return tiny_models.build_tiny_qa(tiny_models_root / "tiny-qa")
