"""Row readers: TSV, CSV, JSONL and JSON lists as a header and located rows of values."""

from __future__ import annotations

import csv
import io
import json

from models.training.datasets.detection import csv_delimiter
from models.training.datasets.types import DataFormat, DatasetError, Location, Row

Table = tuple[list[str], list[Row]]  # column names in first-seen order, and the rows


def read_rows(text: str, fmt: DataFormat, source: str) -> Table:
    """The header and rows of ``text`` read as ``fmt`` (one of the tabular formats)."""
    if fmt is DataFormat.TSV:
        return _read_tsv(text, source)
    if fmt is DataFormat.CSV:
        return _read_csv(text, source)
    if fmt is DataFormat.JSONL:
        return _read_jsonl(text, source)
    if fmt is DataFormat.JSON_RECORDS:
        return _read_json_records(text, source)
    raise AssertionError(fmt)


def _read_tsv(text: str, source: str) -> Table:
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
        if len(fields) != len(header):
            raise DatasetError(
                f"{where.describe()} has {len(fields)} tab-separated fields but the header "
                f"has {len(header)} ({', '.join(header)})."
            )
        rows.append((where, dict(zip(header, fields, strict=True))))
    return header, rows


def _read_csv(text: str, source: str) -> Table:
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


def _read_jsonl(text: str, source: str) -> Table:
    rows: list[Row] = []
    header: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = Location(source, line=number)
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"{where.describe()} is not valid JSON ({exc.msg} at column {exc.colno})."
            ) from None
        if not isinstance(obj, dict):
            raise DatasetError(f"{where.describe()} is not a JSON object ({{...}}).")
        for key in obj:
            if key not in header:
                header.append(key)
        rows.append((where, obj))
    return header, rows


def _read_json_records(text: str, source: str) -> Table:
    records = json.loads(text)
    rows: list[Row] = []
    header: list[str] = []
    for i, obj in enumerate(records, start=1):
        where = Location(source, record=i)
        if not isinstance(obj, dict):
            raise DatasetError(f"{where.describe()} is not a JSON object ({{...}}).")
        for key in obj:
            if key not in header:
                header.append(key)
        rows.append((where, obj))
    return header, rows
