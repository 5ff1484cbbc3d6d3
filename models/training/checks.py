"""A job's data checked before the job exists: parsed exactly as the worker will parse it.

:func:`summarize_sources` is what the bot runs in an isolated process (`bot.isolation`) on the
staged uploads or the hub split: plain arguments in, picklable summaries out, and refusals as
:class:`~models.training.datasets.DatasetError` or :class:`~models.training.spec.JobSpecError`.
"""

from __future__ import annotations

from models.training.datasets import (
    ColumnSpec,
    DataLimits,
    DatasetSummary,
    TrainTask,
    check_validation,
)
from models.training.spec import DataSource


def summarize_sources(
    task: TrainTask,
    columns: ColumnSpec,
    train: DataSource,
    validation: DataSource | None,
    limits: DataLimits,
) -> tuple[DatasetSummary, DatasetSummary | None]:
    """Parse and validate the training (and validation) data; their summaries."""
    train_set = train.load(task, columns, limits)
    if validation is None:
        return train_set.summary(), None
    validation_set = validation.load(task, columns, limits)
    check_validation(train_set, validation_set)
    return train_set.summary(), validation_set.summary()
