"""The training vocabulary: job statuses and hyper-parameters with their one set of defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.training.datasets import TrainTask
from models.training.spec import (
    DEFAULT_HYPERPARAMETERS,
    EXIT_CANCELLED,
    EXIT_COMPLETED,
    EXIT_FAILED,
    DataSource,
    EventKind,
    Hyperparameters,
    JobSpec,
    JobSpecError,
    JobStatus,
)


def test_statuses_are_the_stored_strings() -> None:
    assert [str(s) for s in JobStatus] == [
        "queued", "running", "completed", "failed", "cancelled", "interrupted",
    ]  # fmt: skip
    assert [s for s in JobStatus if s.is_active] == [JobStatus.QUEUED, JobStatus.RUNNING]
    assert json.dumps({"status": JobStatus.CANCELLED}) == '{"status": "cancelled"}'
    assert JobStatus.of_outcome("completed") is JobStatus.COMPLETED
    assert JobStatus.of_outcome("exploded") is JobStatus.FAILED
    assert JobStatus.of_outcome(None) is JobStatus.FAILED
    outcomes = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
    assert [s.exit_code for s in outcomes] == [EXIT_COMPLETED, EXIT_FAILED, EXIT_CANCELLED]
    assert [str(k) for k in EventKind] == ["phase", "dataset", "progress", "eval", "final"]


def test_hyperparameter_defaults_and_ranges() -> None:
    assert DEFAULT_HYPERPARAMETERS == Hyperparameters(3.0, 5e-5, 16, 128, None)
    DEFAULT_HYPERPARAMETERS.check()
    Hyperparameters(epochs=100, batch_size=1024, max_length=8, max_steps=1_000_000).check()
    for bad, message in [
        ({"epochs": 0}, "Epochs must be more than 0 and at most 100."),
        ({"epochs": float("nan")}, "Epochs"),
        ({"learning_rate": 1.0}, "learning rate must be between 0 and 1"),
        ({"batch_size": 1025}, "batch size must be between 1 and 1024."),
        ({"max_length": 7}, "max length must be between 8 and 8192 tokens."),
        ({"max_steps": 0}, "Max steps must be between 1 and 1,000,000."),
    ]:
        with pytest.raises(JobSpecError, match=message):
            Hyperparameters(**bad).check()  # type: ignore[arg-type]


def test_spec_keeps_flat_hyperparameters_in_its_json(tmp_path: Path) -> None:
    chosen = Hyperparameters(epochs=2.0, learning_rate=1e-4, batch_size=8, max_length=64)
    spec = JobSpec.with_hyperparameters(
        chosen,
        task=TrainTask.CAUSAL_LM,
        base_model="gpt2",
        train=DataSource(path="/x/poems.txt"),
        output_dir=str(tmp_path / "o"),
    )
    assert spec.hyperparameters == chosen
    data = json.loads(spec.to_json())
    assert (data["epochs"], data["learning_rate"], data["batch_size"]) == (2.0, 1e-4, 8)
    assert (data["max_length"], data["max_steps"]) == (64, None)
    assert "hyperparameters" not in data
    assert JobSpec.from_json(spec.to_json()) == spec
    plain = JobSpec(
        task=TrainTask.CAUSAL_LM, base_model="gpt2", train=spec.train, output_dir=spec.output_dir
    )
    assert plain.hyperparameters == DEFAULT_HYPERPARAMETERS
    small = JobSpec.with_hyperparameters(
        Hyperparameters(batch_size=0),
        task=TrainTask.CAUSAL_LM,
        base_model="gpt2",
        train=spec.train,
        output_dir=spec.output_dir,
    )
    with pytest.raises(JobSpecError, match="batch size"):
        small.check()
