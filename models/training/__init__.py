"""Fine-tuning: dataset parsing and validation, the training worker process, and its handle.

Nothing here imports discord; torch and transformers load only inside the worker process
(and in the functions that need them), so importing this package is cheap.
"""

from __future__ import annotations

from models.training.datasets import (
    ColumnSpec,
    DataFormat,
    DatasetError,
    DatasetSummary,
    ParsedDataset,
    TrainTask,
    check_validation,
    load_hub_dataset,
    parse_dataset,
)
from models.training.process import TrainingEvent, TrainingProcess, TrainingResult
from models.training.spec import (
    DEFAULT_HYPERPARAMETERS,
    DataSource,
    EventKind,
    Hyperparameters,
    JobSpec,
    JobSpecError,
    JobStatus,
)

__all__ = [
    "DEFAULT_HYPERPARAMETERS",
    "ColumnSpec",
    "DataFormat",
    "DataSource",
    "DatasetError",
    "DatasetSummary",
    "EventKind",
    "Hyperparameters",
    "JobSpec",
    "JobSpecError",
    "JobStatus",
    "ParsedDataset",
    "TrainTask",
    "TrainingEvent",
    "TrainingProcess",
    "TrainingResult",
    "check_validation",
    "load_hub_dataset",
    "parse_dataset",
]
