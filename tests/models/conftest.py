"""Fixtures for registry tests: a registry over the tiny checkpoints."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from models.registry import ModelRegistry
from models.specs import Task, default_specs


@pytest.fixture
def tiny_specs(
    tiny_chat_gpt2_dir: Path,
    tiny_sentiment_dir: Path,
    tiny_ner_dir: Path,
    tiny_qa_dir: Path,
    tiny_embedding_dir: Path,
) -> dict[Task, object]:
    os.environ["HF_HUB_OFFLINE"] = "1"
    return default_specs(
        {
            Task.GENERATION: str(tiny_chat_gpt2_dir),
            Task.SENTIMENT: str(tiny_sentiment_dir),
            Task.NER: str(tiny_ner_dir),
            Task.QA: str(tiny_qa_dir),
            Task.EMBEDDING: str(tiny_embedding_dir),
        },
        overrides={Task.GENERATION: {"max_new_tokens": 24}},
    )


@pytest.fixture
async def registry(tiny_specs: dict, tiny_models_root: Path) -> AsyncIterator[ModelRegistry]:
    # One torch thread: tests share two cores with other processes.
    reg = ModelRegistry(tiny_specs, allowed_roots=[tiny_models_root], torch_threads=1)
    yield reg
    await reg.close()
