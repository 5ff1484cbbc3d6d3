"""Real fine-tuning checks: the MiniLM encoder from PyPI on SST-2, MRPC and CoNLL-2003.

Each trains on a seeded sample of the shared data on the CPU, evaluates on the real
validation split, and prints its figures (run with ``-s`` to see them). Budgets were chosen
so the three together stay within a few minutes on two cores.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from bot.finetune_cli import main as finetune_main
from models.training.datasets import TrainTask, parse_dataset, sample_examples
from models.training.spec import DataSource, JobSpec
from models.training.worker import run_job

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _report(name: str, metrics: dict[str, Any], wall_s: float) -> None:
    shown = {k: metrics[k] for k in ("accuracy", "f1", "precision", "recall") if k in metrics}
    print(f"\nFIGURES {name}: {json.dumps(shown)} wall {wall_s:.0f} s", flush=True)


def test_sst2_accuracy_at_least_80_percent(
    minilm_dir: Path, shared_data: Path, tmp_path: Path
) -> None:
    # Through the operator CLI (and so the separate worker process), as an admin would run it.
    train = parse_dataset(shared_data / "sst2" / "train.tsv", TrainTask.TEXT_CLASSIFICATION)
    sample = sample_examples(train, 5000, seed=42)
    sample_file = tmp_path / "sst2-sample.tsv"
    sample_file.write_text(
        "label\tsentence\n" + "".join(f"{ex.label}\t{ex.text}\n" for ex in sample.examples),
        encoding="utf-8",
    )
    out = tmp_path / "sst2-model"
    started = time.monotonic()
    # Not capsys: transformers' log handler would keep its stream after the test closes it.
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = finetune_main(
            [
                "--task=text-classification",
                f"--base-model={minilm_dir}",
                f"--train={sample_file}",
                f"--validation={shared_data / 'sst2' / 'dev.tsv'}",
                "--epochs=1",
                "--learning-rate=1e-4",
                "--batch-size=32",
                "--max-length=64",
                f"--output={out}",
                "--json",
            ]
        )
    wall = time.monotonic() - started
    lines = stdout.getvalue().strip().splitlines()
    final = json.loads(lines[-1])
    _report("sst2", final["metrics"], wall)
    assert code == 0, lines[-10:]
    assert final["metrics"]["eval_examples"] == 872
    assert final["metrics"]["accuracy"] >= 0.80

    from transformers import pipeline

    classify = pipeline("text-classification", model=str(out))
    assert classify("a gorgeous , witty and moving film .")[0]["label"] == "1"
    assert classify("a dull , lifeless mess .")[0]["label"] == "0"


def test_mrpc_sentence_pairs(minilm_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    spec = JobSpec(
        task=TrainTask.TEXT_CLASSIFICATION,
        base_model=str(minilm_dir),
        train=DataSource(path=str(shared_data / "mrpc" / "train.tsv")),
        validation=DataSource(path=str(shared_data / "mrpc" / "dev.tsv")),
        output_dir=str(tmp_path / "mrpc-model"),
        epochs=1,
        learning_rate=1e-4,
        batch_size=16,
        max_length=64,
        max_train_examples=2000,
        progress_interval_s=30,
    )
    started = time.monotonic()
    result = run_job(spec, lambda event: None)
    _report("mrpc", result["metrics"], time.monotonic() - started)
    metrics = result["metrics"]
    assert metrics["eval_examples"] == 408
    # Modest on purpose (a short CPU run): above chance and with a real F1 on paraphrases.
    assert metrics["accuracy"] >= 0.68
    assert metrics["f1"] >= 0.78


def test_conll2003_entity_f1(minilm_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    spec = JobSpec(
        task=TrainTask.TOKEN_CLASSIFICATION,
        base_model=str(minilm_dir),
        train=DataSource(path=str(shared_data / "conll2003" / "train.txt")),
        validation=DataSource(path=str(shared_data / "conll2003" / "valid.txt")),
        output_dir=str(tmp_path / "ner-model"),
        epochs=1,
        learning_rate=1e-4,
        batch_size=16,
        max_length=64,
        max_train_examples=3000,
        max_eval_examples=1000,
        progress_interval_s=30,
    )
    started = time.monotonic()
    result = run_job(spec, lambda event: None)
    _report("conll2003", result["metrics"], time.monotonic() - started)
    assert result["metrics"]["eval_examples"] == 1000
    assert result["metrics"]["f1"] >= 0.60

    from transformers import pipeline

    ner = pipeline(
        "token-classification", model=result["output_dir"], aggregation_strategy="simple"
    )
    groups = {e["entity_group"] for e in ner("John Smith flew from London to Berlin on Monday .")}
    assert {"PER", "LOC"} <= groups
