"""Parse a dataset given as a file or its bytes: decode, recognise the format, hand it to the
task's parser (from the task table)."""

from __future__ import annotations

import logging
from pathlib import Path

from models.decoding import TextDecodeError, decode_text

# The task table imports this package's parsers: take the module, not its names, so that
# either may be imported first.
from models.training import tasks
from models.training.datasets.detection import detect_format
from models.training.datasets.types import ColumnSpec, DatasetError, ParsedDataset, TrainTask

logger = logging.getLogger(__name__)

# What to upload instead of a binary file.
WANTED = "a UTF-8 CSV, TSV, JSONL, CoNLL, JSON or text file"


def parse_dataset(
    data: bytes | str | Path,
    task: TrainTask | str,
    *,
    filename: str | None = None,
    columns: ColumnSpec | None = None,
) -> ParsedDataset:
    """Parse and validate a dataset given as raw bytes or a file path.

    ``filename`` is only used in messages (and as a hint); the format is recognised by content.
    """
    task = TrainTask.parse(task) if isinstance(task, str) else task
    if isinstance(data, (str, Path)):
        path = Path(data)
        source = filename or path.name
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise DatasetError(f"The file {str(path)!r} does not exist.") from None
        except IsADirectoryError:
            raise DatasetError(f"{str(path)!r} is a folder, not a data file.") from None
        except OSError as exc:
            raise DatasetError(f"Couldn't read {str(path)!r}: {exc.strerror}.") from None
    else:
        raw = data
        source = filename or "the uploaded file"
    try:
        text = decode_text(raw, source, wanted=WANTED)
    except TextDecodeError as exc:
        raise DatasetError(str(exc)) from None
    fmt = detect_format(text)
    logger.debug("dataset %s recognised as %s for %s", source, fmt, task)
    return tasks.task_spec(task).parse_text(text, fmt, source, columns or ColumnSpec())
