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
    max_rows: int | None = None,
) -> ParsedDataset:
    """Parse and validate a dataset given as raw bytes or a file path.

    ``filename`` is what messages call the file (a path given without one is called by its
    name, never its folder); the format is recognised by content. More than ``max_rows``
    examples are refused as soon as the parser reaches them.
    """
    task = TrainTask.parse(task) if isinstance(task, str) else task
    if isinstance(data, (str, Path)):
        path = Path(data)
        source = filename or path.name
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise DatasetError(f"The file {source!r} does not exist.") from None
        except IsADirectoryError:
            raise DatasetError(f"{source!r} is a folder, not a data file.") from None
        except OSError as exc:
            raise DatasetError(f"Couldn't read {source!r}: {exc.strerror}.") from None
    else:
        raw = data
        source = filename or "the uploaded file"
    try:
        text = decode_text(raw, source, wanted=WANTED)
    except TextDecodeError as exc:
        raise DatasetError(str(exc)) from None
    del raw  # the text is all that is needed from here (a file may be tens of MB)
    fmt = detect_format(text)
    logger.debug("dataset %s recognised as %s for %s", source, fmt, task)
    parse = tasks.task_spec(task).parse_text
    try:
        return parse(text, fmt, source, columns or ColumnSpec(), max_rows=max_rows)
    except RecursionError:  # a value nested too deep for the parser (JSON is caught earlier)
        raise DatasetError(f"{source} nests its values too deeply to read.") from None
