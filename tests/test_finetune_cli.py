"""``python -m bot finetune``: validation first, then the training process, then one JSON line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.finetune_cli import EXIT_INVALID, main
from tests.support.data import shared_file


def _sst_sample(path: Path, n: int) -> Path:
    lines = shared_file("sst2", "train.tsv").read_bytes().split(b"\r\n")
    path.write_bytes(b"\r\n".join(lines[: n + 1]) + b"\r\n")
    return path


def test_run_prints_progress_then_one_json_line(
    tiny_sentiment_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = _sst_sample(tmp_path / "train.tsv", 150)
    out = tmp_path / "out"
    code = main(
        [
            "--task",
            "text-classification",
            "--base-model",
            str(tiny_sentiment_dir),
            "--train",
            str(train),
            "--validation",
            str(shared_file("sst2", "dev.tsv")),
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--max-length",
            "32",
            "--max-steps",
            "5",
            "--learning-rate",
            "1e-4",
            "--output",
            str(out),
            "--json",
        ]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0, lines[-5:]
    final = json.loads(lines[-1])
    assert final["status"] == "completed"
    assert final["output_dir"] == str(out.resolve())
    assert set(final["metrics"]) >= {"accuracy", "f1", "loss"}
    assert final["metrics"]["steps"] == 5 and final["metrics"]["eval_examples"] == 872
    text = "\n".join(lines[:-1])
    assert "train.tsv: 150 examples" in text  # the validation summary comes first
    assert "step 5/5" in text and "eval at step 5: loss" in text and "[training]" in text
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "0", "1": "1"}
    assert (out / "model.safetensors").is_file()


def test_malformed_file_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = tmp_path / "data.txt"
    train.write_bytes(b"label\tsentence\r\n1\tgood\r\n0\tbad\r\n1\tthree\tfields\r\n")
    out = tmp_path / "out"
    argv = ["--task", "text-classification", "--base-model", "/nowhere", "--train", str(train)]
    code = main([*argv, "--output", str(out)])
    assert code == EXIT_INVALID
    assert "data.txt line 4 has 3 tab-separated fields" in capsys.readouterr().err
    code = main([*argv, "--output", str(out), "--json"])
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == EXIT_INVALID
    assert final["status"] == "failed" and final["output_dir"] is None
    assert "line 4" in final["error"]
    assert not out.exists()


def test_unusable_options_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("x")
    base = ["--task", "causal-lm", "--base-model", "m", "--train", str(tmp_path / "t.txt")]
    assert main([*base, "--output", str(taken)]) == EXIT_INVALID
    assert "already exists" in capsys.readouterr().err
    assert main([*base, "--output", str(tmp_path / "o"), "--epochs", "0"]) == EXIT_INVALID
    assert main(["--task", "nope", "--base-model", "m", "--train", "t", "--output", "o"]) == 2
    assert main(["--help"]) == 0
    assert "--text-pair-column" in capsys.readouterr().out
