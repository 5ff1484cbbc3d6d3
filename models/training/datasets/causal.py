"""Causal language modelling data: plain text (paragraphs, else lines, are the examples) or
JSON rows with a text field."""

from __future__ import annotations

from collections.abc import Sequence

from models.training.datasets.rows import read_rows
from models.training.datasets.types import (
    ColumnSpec,
    DataFormat,
    DatasetError,
    Location,
    ParsedDataset,
    Row,
    TextExample,
    TrainTask,
    check_count,
    check_example_size,
    check_row_limit,
)


def parse_causal(
    text: str, fmt: DataFormat, source: str, columns: ColumnSpec, *, max_rows: int | None = None
) -> ParsedDataset:
    """A causal-LM dataset from a file's decoded text (``columns.text`` names a JSON field)."""
    if fmt in (DataFormat.JSONL, DataFormat.JSON_RECORDS):
        header, rows = read_rows(text, fmt, source, max_rows=max_rows)
        return causal_from_rows(rows, header, fmt, source, columns)
    if fmt is DataFormat.SQUAD:
        raise DatasetError(f"{source} is SQuAD JSON; causal LM training needs plain text or JSONL.")
    # Any other text trains as it is; paragraphs (or lines) are the unit for holding out.
    units: list[TextExample] = []
    paragraph: list[str] = []
    start = chars = 0
    for number, line in enumerate([*text.split("\n"), ""], start=1):
        if line.strip():
            if not paragraph:
                start, chars = number, 0
            chars += len(line) + 1
            check_example_size(chars, Location(source, line=start))
            paragraph.append(line.rstrip())
        elif paragraph:
            where = Location(source, line=start)
            check_row_limit(len(units) + 1, max_rows, where)
            units.append(TextExample("\n".join(paragraph), where))
            paragraph = []
    if len(units) < 2:
        units = []
        for n, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                where = Location(source, line=n)
                check_row_limit(len(units) + 1, max_rows, where)
                units.append(TextExample(line.rstrip(), where))
    check_count(units, source)
    return ParsedDataset(TrainTask.CAUSAL_LM, DataFormat.TEXT, source, tuple(units))


def causal_from_rows(
    rows: Sequence[Row], header: Sequence[str], fmt: DataFormat, source: str, columns: ColumnSpec
) -> ParsedDataset:
    """A causal-LM dataset from rows with a text field (``text`` unless ``columns.text``)."""
    key = columns.text or "text"
    examples: list[TextExample] = []
    for where, row in rows:
        value = row.get(key)
        if not isinstance(value, str):
            raise DatasetError(f"{where.describe()} has no {key!r} string.")
        check_example_size(len(value), where)
        if value.strip():
            examples.append(TextExample(value, where))
    check_count(examples, source)
    return ParsedDataset(TrainTask.CAUSAL_LM, fmt, source, tuple(examples), (), (("text", key),))
