"""The embedding task: vectors equal sentence-transformers' on the real MiniLM, pooling read
from the checkpoint's sentence-transformers files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.errors import InvalidInput
from models.registry import ModelRegistry
from models.requests import EmbedRequest
from models.results import EmbeddingResult
from models.runners.embedding import PoolingConfig, pooling_config
from models.specs import Task, default_spec

TEXTS = (
    "Which NFL team represented the AFC at Super Bowl 50?",
    "The Denver Broncos defeated the Carolina Panthers 24–10 to earn their third title.",
    "Warsaw is the capital and largest city of Poland.",
    # Longer than the model's 256-token limit: both sides truncate it the same way.
    " ".join(["The Normans were the people who gave their name to Normandy."] * 40),
)


@pytest.fixture
async def minilm_registry(minilm_dir: Path) -> ModelRegistry:
    spec = default_spec(Task.EMBEDDING, str(minilm_dir))
    registry = ModelRegistry([spec], torch_threads=1)
    yield registry  # type: ignore[misc]
    await registry.close()


@pytest.mark.slow
async def test_vectors_equal_sentence_transformers_encode(
    minilm_registry: ModelRegistry, minilm_dir: Path
) -> None:
    from sentence_transformers import SentenceTransformer

    expected = SentenceTransformer(str(minilm_dir), device="cpu").encode(list(TEXTS))
    # One request with every text, and one request per text batched together.
    together = await minilm_registry.submit(EmbedRequest(TEXTS))
    apart = [await minilm_registry.submit(EmbedRequest((text,))) for text in TEXTS]
    assert isinstance(together, EmbeddingResult) and together.dimension == 384
    got = np.array([together.values(i) for i in range(len(TEXTS))])
    alone = np.array([result.values(0) for result in apart])
    assert np.abs(got - expected).max() < 1e-4
    assert np.abs(alone - expected).max() < 1e-4
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert all(len(vector) == 384 * 4 for vector in together.vectors)


async def test_blank_texts_are_refused_before_loading(minilm_registry: ModelRegistry) -> None:
    for texts in ((), ("fine", "  ")):
        with pytest.raises(InvalidInput):
            await minilm_registry.submit(EmbedRequest(texts))
    assert minilm_registry.status(Task.EMBEDDING).state == "not loaded"


def _folder(tmp_path: Path, files: dict[str, object]) -> Path:
    for name, value in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value), encoding="utf-8")
    return tmp_path


def _pooling(mode: str) -> dict[str, bool]:
    return {
        "pooling_mode_cls_token": mode == "cls",
        "pooling_mode_mean_tokens": mode == "mean",
        "pooling_mode_max_tokens": mode == "max",
    }


@pytest.mark.parametrize("mode", ["mean", "cls", "max"])
def test_pooling_follows_the_sentence_transformers_files(tmp_path: Path, mode: str) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    folder = _folder(
        tmp_path,
        {
            "modules.json": modules,
            "1_Pooling/config.json": _pooling(mode),
            "sentence_bert_config.json": {"max_seq_length": 128},
        },
    )
    assert pooling_config(lambda name: folder / name) == PoolingConfig(mode, 128)  # type: ignore[arg-type]


def test_a_plain_checkpoint_gets_mean_pooling_over_its_full_length(tmp_path: Path) -> None:
    assert pooling_config(lambda name: tmp_path / name) == PoolingConfig("mean", None)
    (tmp_path / "modules.json").write_text("not json", encoding="utf-8")
    assert pooling_config(lambda name: tmp_path / name) == PoolingConfig("mean", None)
