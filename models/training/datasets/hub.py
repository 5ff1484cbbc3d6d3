"""Load a Hugging Face hub dataset split and validate it like a file of the same task."""

from __future__ import annotations

import logging
from typing import Any

# The task table imports this package's parsers: take the module, not its names, so that
# either may be imported first.
from models.training import tasks
from models.training.datasets.types import (
    ColumnSpec,
    DataFormat,
    DatasetError,
    Location,
    ParsedDataset,
    Row,
    TrainTask,
)

logger = logging.getLogger(__name__)


def load_hub_dataset(
    name: str,
    task: TrainTask | str,
    *,
    config: str | None = None,
    split: str = "train",
    columns: ColumnSpec | None = None,
) -> ParsedDataset:
    """Load a hub dataset split; class-label ids become their names."""
    task = TrainTask.parse(task) if isinstance(task, str) else task
    import datasets  # deferred: heavy, and only this path needs it

    source = f"{name}{'/' + config if config else ''} [{split}]"
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # the library raises many unrelated types for "not found"
        logger.info("hub dataset %s failed to load: %r", source, exc)
        raise DatasetError(f"Couldn't load the hub dataset {source}: {exc}") from exc
    features = getattr(ds, "features", {}) or {}
    class_names = {
        column: names for column, feature in features.items() if (names := _class_names(feature))
    }
    rows: list[Row] = []
    for i, values in enumerate(ds, start=1):
        row = dict(values)
        for column, names in class_names.items():
            if column in row:
                row[column] = _named(row[column], names)
        rows.append((Location(source, row=i), row))
    header = list(features) if features else (list(rows[0][1]) if rows else [])
    spec = tasks.task_spec(task)
    return spec.parse_rows(rows, header, DataFormat.HUB, source, columns or ColumnSpec())


def _class_names(feature: Any) -> list[str] | None:
    """The names of a ClassLabel column, or of a Sequence of ClassLabel."""
    inner = getattr(feature, "feature", feature)
    names = getattr(inner, "names", None)
    return list(names) if names else None


def _named(value: Any, names: list[str]) -> Any:
    if isinstance(value, list):
        return [names[v] if isinstance(v, int) and v >= 0 else v for v in value]
    if isinstance(value, int) and value >= 0:
        return names[value]
    return value
