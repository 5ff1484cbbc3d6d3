"""The job specification handed to the training process, as a frozen dataclass and JSON.

Also the vocabulary both sides of the process boundary share: a job's statuses, the worker's
event kinds and exit codes, and the hyper-parameters with their defaults and ranges (the bot's
options, the CLI's flags and the worker all read them from here).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from models.training.datasets import (
    ColumnSpec,
    DataLimits,
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


class EventKind(StrEnum):
    """What the worker writes as ``"event"`` in each JSON line of its stdout."""

    PHASE = "phase"  # loading_data, loading_model, tokenizing, training, evaluating, saving
    DATASET = "dataset"  # example counts and labels
    PROGRESS = "progress"  # step, epoch, loss, ETA
    EVAL = "eval"  # an evaluation's metrics
    FINAL = "final"  # the outcome, exactly once, last


class JobStatus(StrEnum):
    """Where a fine-tuning job stands; the values are what the database and the worker write.

    The worker's final event says completed, failed or cancelled; queued, running and
    interrupted exist only in the bot's records.
    """

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def is_active(self) -> bool:
        """Queued or running: the job has not ended yet."""
        return self in (JobStatus.QUEUED, JobStatus.RUNNING)

    @classmethod
    def of_outcome(cls, value: object) -> JobStatus:
        """The status a worker reported (anything it should not have said counts as failed)."""
        try:
            return cls(str(value))
        except ValueError:
            return cls.FAILED

    @property
    def exit_code(self) -> int:
        """The training process's exit code for this outcome."""
        if self is JobStatus.COMPLETED:
            return EXIT_COMPLETED
        return EXIT_CANCELLED if self is JobStatus.CANCELLED else EXIT_FAILED


class JobSpecError(ValueError):
    """A job parameter out of range; ``str()`` is a sentence for the user."""


@dataclass(frozen=True)
class Hyperparameters:
    """What a user may choose about a training run; the defaults are the one place they live."""

    epochs: float = 3.0
    learning_rate: float = 5e-5
    batch_size: int = 16
    max_length: int = 128
    max_steps: int | None = None  # None: as many as the epochs take

    # Inclusive ranges (the learning rate is any value strictly between 0 and 1).
    MAX_EPOCHS: ClassVar[float] = 100.0
    BATCH_SIZE_RANGE: ClassVar[tuple[int, int]] = (1, 1024)
    MAX_LENGTH_RANGE: ClassVar[tuple[int, int]] = (8, 8192)
    MAX_STEPS_RANGE: ClassVar[tuple[int, int]] = (1, 1_000_000)

    def check(self) -> None:
        """Raise :class:`JobSpecError` for a value out of range."""
        if not (0 < self.epochs <= self.MAX_EPOCHS) or math.isnan(self.epochs):
            raise JobSpecError(f"Epochs must be more than 0 and at most {self.MAX_EPOCHS:g}.")
        if not (0 < self.learning_rate < 1):
            raise JobSpecError("The learning rate must be between 0 and 1 (e.g. 5e-5).")
        low, high = self.BATCH_SIZE_RANGE
        if not (low <= self.batch_size <= high):
            raise JobSpecError(f"The batch size must be between {low} and {high}.")
        low, high = self.MAX_LENGTH_RANGE
        if not (low <= self.max_length <= high):
            raise JobSpecError(f"The max length must be between {low} and {high} tokens.")
        low, high = self.MAX_STEPS_RANGE
        if self.max_steps is not None and not (low <= self.max_steps <= high):
            raise JobSpecError(f"Max steps must be between {low:,} and {high:,}.")


DEFAULT_HYPERPARAMETERS = Hyperparameters()


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

    def load(
        self, task: TrainTask, columns: ColumnSpec, limits: DataLimits | None = None
    ) -> ParsedDataset:
        """Parse and validate this source within ``limits`` (blocking: call it off the loop)."""
        limits = limits or DataLimits()
        if self.path is not None:
            return parse_dataset(
                Path(self.path),
                task,
                filename=self.display_name,
                columns=columns,
                max_rows=limits.max_rows,
            )
        assert self.hub_name is not None
        return load_hub_dataset(
            self.hub_name,
            task,
            config=self.hub_config,
            split=self.hub_split,
            columns=columns,
            limits=limits,
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
    # The hyper-parameters, flat (the worker reads them so, and so does job.json).
    epochs: float = DEFAULT_HYPERPARAMETERS.epochs
    learning_rate: float = DEFAULT_HYPERPARAMETERS.learning_rate
    batch_size: int = DEFAULT_HYPERPARAMETERS.batch_size
    max_length: int = DEFAULT_HYPERPARAMETERS.max_length
    max_steps: int | None = DEFAULT_HYPERPARAMETERS.max_steps
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
    # What messages call the base model ("job #12", a folder's name); None: the ref itself.
    base_model_label: str | None = None
    # Bounds (None: none, as for the operator's CLI): examples read per data source, a hub
    # split's stated size, and the base model's parameters (counted before weights load).
    max_rows: int | None = None
    hub_max_bytes: int | None = None
    max_parameters: int | None = None
    # Where the worker keeps its scratch files (None: the system's temporary folder).
    scratch_dir: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.task, TrainTask):
            object.__setattr__(self, "task", TrainTask.parse(str(self.task)))

    @classmethod
    def with_hyperparameters(cls, hyperparameters: Hyperparameters, **fields: Any) -> JobSpec:
        """A spec from the other ``fields`` and ``hyperparameters``, spread flat."""
        return cls(**fields, **asdict(hyperparameters))

    @property
    def data_limits(self) -> DataLimits:
        return DataLimits(max_rows=self.max_rows, max_bytes=self.hub_max_bytes)

    @property
    def model_label(self) -> str:
        """The base model as messages name it."""
        return self.base_model_label or self.base_model

    @property
    def hyperparameters(self) -> Hyperparameters:
        return Hyperparameters(
            epochs=self.epochs,
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            max_length=self.max_length,
            max_steps=self.max_steps,
        )

    def check(self) -> None:
        """Raise :class:`JobSpecError` for parameters out of range (before anything starts)."""
        if not self.base_model.strip():
            raise JobSpecError("Give a base model (a hub id or a local folder).")
        self.hyperparameters.check()
        if self.evals_per_epoch < 1:
            raise JobSpecError("Evaluations per epoch must be at least 1.")
        for name in ("max_train_examples", "max_eval_examples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise JobSpecError(f"{name} must be at least 1.")
        output = Path(self.output_dir)
        if output.exists() and (not output.is_dir() or any(output.iterdir())):
            raise JobSpecError(
                f"The output folder {output.name!r} already exists and is not empty."
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
    "DEFAULT_HYPERPARAMETERS",
    "EXIT_CANCELLED",
    "EXIT_COMPLETED",
    "EXIT_FAILED",
    "DataSource",
    "DatasetError",
    "EventKind",
    "Hyperparameters",
    "JobSpec",
    "JobSpecError",
    "JobStatus",
]
