"""The job specification handed to the training process, as a frozen dataclass and JSON."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models.training.datasets import (
    ColumnSpec,
    DatasetError,
    ParsedDataset,
    TrainTask,
    load_hub_dataset,
    parse_dataset,
)

# Exit codes of the training process (the final event says the same in words).
EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_CANCELLED = 3

# Event kinds written by the worker, one JSON object a line.
EVENT_PHASE = "phase"
EVENT_DATASET = "dataset"
EVENT_PROGRESS = "progress"
EVENT_EVAL = "eval"
EVENT_FINAL = "final"

STATUS_COMPLETED = "completed"
STATUS_FAILED = "failed"
STATUS_CANCELLED = "cancelled"


class JobSpecError(ValueError):
    """A job parameter out of range; ``str()`` is a sentence for the user."""


@dataclass(frozen=True)
class DataSource:
    """Where examples come from: a local file, or a hub dataset name/config/split."""

    path: str | None = None
    hub_name: str | None = None
    hub_config: str | None = None
    hub_split: str = "train"
    display_name: str | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.hub_name is None):
            raise JobSpecError("A data source needs either a file path or a hub dataset name.")

    @classmethod
    def parse(cls, value: str, *, default_split: str = "train") -> DataSource:
        """A path, or ``hub:NAME[:CONFIG][@SPLIT]`` for a hub dataset."""
        if not value.startswith("hub:"):
            return cls(path=value)
        rest = value[4:]
        rest, _, split = rest.partition("@")
        name, _, config = rest.partition(":")
        if not name:
            raise JobSpecError(f"{value!r}: write hub datasets as hub:NAME[:CONFIG][@SPLIT].")
        return cls(hub_name=name, hub_config=config or None, hub_split=split or default_split)

    def load(self, task: TrainTask, columns: ColumnSpec) -> ParsedDataset:
        """Parse and validate this source (blocking: call it off the event loop)."""
        if self.path is not None:
            return parse_dataset(Path(self.path), task, filename=self.display_name, columns=columns)
        assert self.hub_name is not None
        return load_hub_dataset(
            self.hub_name, task, config=self.hub_config, split=self.hub_split, columns=columns
        )


@dataclass(frozen=True)
class JobSpec:
    """Everything one training run needs; serialised to JSON for the worker process."""

    task: TrainTask
    base_model: str
    train: DataSource
    output_dir: str
    validation: DataSource | None = None
    columns: ColumnSpec = field(default_factory=ColumnSpec)
    epochs: float = 3.0
    learning_rate: float = 5e-5
    batch_size: int = 16
    max_length: int = 128
    max_steps: int | None = None
    seed: int = 42
    warmup_fraction: float = 0.06
    weight_decay: float = 0.01
    evals_per_epoch: int = 1
    # Seeded random samples of the data (None = all): quick runs on big datasets.
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    cancel_file: str | None = None
    progress_file: str | None = None
    torch_threads: int | None = None
    device: str | None = None
    progress_interval_s: float = 2.0

    def __post_init__(self) -> None:
        if not isinstance(self.task, TrainTask):
            object.__setattr__(self, "task", TrainTask.parse(str(self.task)))

    def check(self) -> None:
        """Raise :class:`JobSpecError` for parameters out of range (before anything starts)."""
        if not self.base_model.strip():
            raise JobSpecError("Give a base model (a hub id or a local folder).")
        if not (0 < self.epochs <= 100) or math.isnan(self.epochs):
            raise JobSpecError("Epochs must be more than 0 and at most 100.")
        if not (0 < self.learning_rate < 1):
            raise JobSpecError("The learning rate must be between 0 and 1 (e.g. 5e-5).")
        if not (1 <= self.batch_size <= 1024):
            raise JobSpecError("The batch size must be between 1 and 1024.")
        if not (8 <= self.max_length <= 8192):
            raise JobSpecError("The max length must be between 8 and 8192 tokens.")
        if self.max_steps is not None and not (1 <= self.max_steps <= 1_000_000):
            raise JobSpecError("Max steps must be between 1 and 1,000,000.")
        if self.evals_per_epoch < 1:
            raise JobSpecError("Evaluations per epoch must be at least 1.")
        for name in ("max_train_examples", "max_eval_examples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise JobSpecError(f"{name} must be at least 1.")
        output = Path(self.output_dir)
        if output.exists() and (not output.is_dir() or any(output.iterdir())):
            raise JobSpecError(
                f"The output folder {self.output_dir} already exists and is not empty."
            )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        data = dict(data)
        data["task"] = TrainTask.parse(data["task"])
        data["train"] = DataSource(**data["train"])
        if data.get("validation") is not None:
            data["validation"] = DataSource(**data["validation"])
        data["columns"] = ColumnSpec(**(data.get("columns") or {}))
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        try:
            return cls.from_dict(json.loads(text))
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise JobSpecError(f"The job specification is not valid: {exc}.") from exc


__all__ = [
    "EVENT_DATASET",
    "EVENT_EVAL",
    "EVENT_FINAL",
    "EVENT_PHASE",
    "EVENT_PROGRESS",
    "EXIT_CANCELLED",
    "EXIT_COMPLETED",
    "EXIT_FAILED",
    "STATUS_CANCELLED",
    "STATUS_COMPLETED",
    "STATUS_FAILED",
    "DataSource",
    "DatasetError",
    "JobSpec",
    "JobSpecError",
]
