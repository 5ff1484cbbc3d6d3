"""Fine-tuning datasets: decode a file, recognise its format by content, parse and validate it.

Bytes become text through :mod:`models.decoding` (shared with the bot's uploads). Everything
here is plain synchronous code on bytes or a path, so the bot can run it off the
event loop and the training process can run it again on its own. Malformed input raises
:class:`DatasetError`, whose message is a sentence for the user naming the line or row.

Modules: ``types`` (tasks, formats, locations, examples, datasets and their summary),
``detection`` (which format), ``rows`` (tables and JSON as located rows), one parser module per task (``classification``, ``tokens``, ``qa``, ``causal``),
``files`` and ``hub`` (the entry points, which pick the task's parser from
``models.training.tasks``) and ``splits`` (validation checks, hold-out, samples).
"""

from __future__ import annotations

from models.decoding import TextDecodeError, decode_text
from models.training.datasets.detection import detect_format
from models.training.datasets.files import parse_dataset
from models.training.datasets.hub import load_hub_dataset
from models.training.datasets.splits import check_validation, sample_examples, split_holdout
from models.training.datasets.types import (
    MAX_EXAMPLE_CHARS,
    MAX_SAMPLE_CHARS,
    MIN_EXAMPLES,
    Answer,
    ClassificationExample,
    ColumnSpec,
    DataFormat,
    DataLimits,
    DatasetError,
    DatasetSummary,
    Example,
    Location,
    ParsedDataset,
    QAExample,
    TextExample,
    TokenExample,
    TrainTask,
)

__all__ = [
    "MAX_EXAMPLE_CHARS",
    "MAX_SAMPLE_CHARS",
    "MIN_EXAMPLES",
    "Answer",
    "ClassificationExample",
    "ColumnSpec",
    "DataFormat",
    "DataLimits",
    "DatasetError",
    "DatasetSummary",
    "Example",
    "Location",
    "ParsedDataset",
    "QAExample",
    "TextDecodeError",
    "TextExample",
    "TokenExample",
    "TrainTask",
    "check_validation",
    "decode_text",
    "detect_format",
    "load_hub_dataset",
    "parse_dataset",
    "sample_examples",
    "split_holdout",
]
