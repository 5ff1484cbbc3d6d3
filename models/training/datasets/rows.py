"""Row readers: TSV, CSV, JSONL and JSON lists as a header and located rows of values.

Every reader stops with a :class:`DatasetError` once it has read more than ``max_rows`` rows,
and every JSON failure (invalid, or nested past the parser's recursion limit) names its line.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from models.training.datasets.detection import csv_delimiter
from models.training.datasets.types import (
    DataFormat,
    DatasetError,
    Location,
    Row,
    check_row_limit,
)

Table = tuple[list[str], list[Row]]  # column names in first-seen order, and the rows

# Nesting deeper than this is what the error names when the JSON parser gives up.
JSON_NESTING_SHOWN = 100


def read_rows(text: str, fmt: DataFormat, source: str, *, max_rows: int | None = None) -> Table:
    """The header and rows of ``text`` read as ``fmt`` (one of the tabular formats)."""
    if fmt is DataFormat.TSV:
        return _read_tsv(text, source, max_rows)
    if fmt is DataFormat.CSV:
        return _read_csv(text, source, max_rows)
    if fmt is DataFormat.JSONL:
        return _read_jsonl(text, source, max_rows)
    if fmt is DataFormat.JSON_RECORDS:
        return _read_json_records(text, source, max_rows)
    raise AssertionError(fmt)


def parse_json(text: str, source: str, *, line: int | None = None) -> Any:
    """``json.loads`` with its failures as sentences naming the line (``line``: the line
    ``text`` is, for one line of a JSONL file; else lines are counted within ``text``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = Location(source, line=line if line is not None else exc.lineno)
        raise DatasetError(
            f"{where.describe()} is not valid JSON ({exc.msg} at column {exc.colno})."
        ) from None
    except RecursionError:
        offset = _nesting_line(text, JSON_NESTING_SHOWN) - 1
        where = Location(source, line=(line if line is not None else 1) + offset)
        raise DatasetError(
            f"{where.describe()} nests JSON more than {JSON_NESTING_SHOWN} levels deep; "
            "flatten the data and try again."
        ) from None


def _nesting_line(text: str, limit: int) -> int:
    """The line on which JSON ``text`` first nests deeper than ``limit`` (1 if it never does)."""
    depth, line = 0, 1
    in_string = escaped = False
    for char in text:
        if char == "\n":
            line += 1
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return line
        elif char in "]}":
            depth -= 1
    return 1


def _read_tsv(text: str, source: str, max_rows: int | None) -> Table:
    """Split on tabs, no quoting: MRPC sentences contain raw quote characters."""
    lines = text.split("\n")
    header = [name.strip() for name in lines[0].split("\t")]
    rows: list[Row] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        while len(fields) > len(header) and not fields[-1].strip():
            fields.pop()
        where = Location(source, line=number)
        check_row_limit(len(rows) + 1, max_rows, where)
        if len(fields) != len(header):
            raise DatasetError(
                f"{where.describe()} has {len(fields)} tab-separated fields but the header "
                f"has {len(header)} ({', '.join(header)})."
            )
        rows.append((where, dict(zip(header, fields, strict=True))))
    return header, rows


def _read_csv(text: str, source: str, max_rows: int | None) -> Table:
    delimiter = csv_delimiter(text.split("\n", 1)[0])
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, strict=True)
    rows: list[Row] = []
    header: list[str] = []
    last_line = 0
    try:
        for record in reader:
            # A quoted field may span lines: the record starts after the previous one ended.
            where = Location(source, line=last_line + 1)
            last_line = reader.line_num
            if not record or not any(field.strip() for field in record):
                continue
            if not header:
                header = [name.strip() for name in record]
                continue
            check_row_limit(len(rows) + 1, max_rows, where)
            if len(record) != len(header):
                raise DatasetError(
                    f"{where.describe()} has {len(record)} fields but the header has "
                    f"{len(header)} ({', '.join(header)})."
                )
            rows.append((where, dict(zip(header, record, strict=True))))
    except csv.Error as exc:
        where = Location(source, line=reader.line_num)
        raise DatasetError(f"{where.describe()} is not valid CSV: {exc}.") from None
    return header, rows


def _read_jsonl(text: str, source: str, max_rows: int | None) -> Table:
    rows: list[Row] = []
    header: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = Location(source, line=number)
        check_row_limit(len(rows) + 1, max_rows, where)
        try:
            obj = parse_json(line, source, line=number)
        except DatasetError:
            if not rows and "\n" in text.strip():
                # Not one object a line: a JSON document spread over lines (likely cut short);
                # name the line where the document itself breaks.
                parse_json(text, source)
            raise
        if not isinstance(obj, dict):
            raise DatasetError(f"{where.describe()} is not a JSON object ({{...}}).")
        for key in obj:
            if key not in header:
                header.append(key)
        rows.append((where, obj))
    return header, rows


def _read_json_records(text: str, source: str, max_rows: int | None) -> Table:
    records = parse_json(text, source)
    if not isinstance(records, list):
        raise DatasetError(f"{source} is not a JSON list of objects.")
    rows: list[Row] = []
    header: list[str] = []
    for i, obj in enumerate(records, start=1):
        where = Location(source, record=i)
        check_row_limit(i, max_rows, where)
        if not isinstance(obj, dict):
            raise DatasetError(f"{where.describe()} is not a JSON object ({{...}}).")
        for key in obj:
            if key not in header:
                header.append(key)
        rows.append((where, obj))
    return header, rows
