"""Loading models from several threads of one process (two registries: shards, tests)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from models.loading import load_model
from models.refs import ModelRef
from models.specs import ModelSpec, Task


def test_loads_at_once_in_one_process_leave_tied_weights_tied(
    tiny_gpt2_dir: Path, tiny_sentiment_dir: Path
) -> None:
    """transformers switches tying off on the class while it loads: two loads racing used to
    leave it off for good, and every later GPT-2 had an untrained, uninitialised output layer."""
    specs = [
        ModelSpec(Task.GENERATION, str(tiny_gpt2_dir)),
        ModelSpec(Task.SENTIMENT, str(tiny_sentiment_dir)),
    ]

    def load(spec: ModelSpec) -> None:
        load_model(spec, ModelRef("local", spec.model_id))

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(load, specs * 12))
    model = load_model(specs[0], ModelRef("local", specs[0].model_id)).model
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
