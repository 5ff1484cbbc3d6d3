"""Recognise a dataset's format by its content: extensions lie (MSRP ships as .txt)."""

from __future__ import annotations

import csv
import io
import json
import re

from models.training.datasets.types import DataFormat

# An IOB/BIOES tag: "O" or a prefix and an entity type.
TAG_RE = re.compile(r"^(O|[BIESLU]-\S+)$")


def detect_format(text: str) -> DataFormat:
    """The format of decoded text, judged by its content."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            return DataFormat.JSONL  # one object a line, or broken: the JSONL parser names the line
        except RecursionError:  # nested too deep: the reader names the line where it happens
            return DataFormat.JSON_RECORDS if stripped.startswith("[") else DataFormat.JSONL
        if isinstance(obj, dict) and isinstance(obj.get("data"), list):
            return DataFormat.SQUAD
        if isinstance(obj, list):
            return DataFormat.JSON_RECORDS
        return DataFormat.JSONL  # a single-object JSONL file
    lines = [line for line in text.split("\n") if line.strip()][:500]
    if _looks_conll(lines):
        return DataFormat.CONLL
    first = lines[0]
    if "\t" in first:
        return DataFormat.TSV
    if "," in first or ";" in first:
        if _consistent_csv(lines[:50]):
            return DataFormat.CSV
    return DataFormat.TEXT


def csv_delimiter(header: str) -> str:
    """``;`` when the header line has more semicolons than commas, else ``,``."""
    return ";" if header.count(";") > header.count(",") else ","


def _looks_conll(lines: list[str]) -> bool:
    body = [line for line in lines if not line.startswith("-DOCSTART-")]
    if not body:
        return bool(lines)
    tagged = 0
    for line in body:
        fields = line.split()
        if 2 <= len(fields) <= 10 and TAG_RE.match(fields[-1]):
            tagged += 1
    return tagged >= 0.9 * len(body)


def _consistent_csv(lines: list[str]) -> bool:
    delimiter = csv_delimiter(lines[0])
    try:
        widths = {
            len(row) for row in csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)
        }
    except csv.Error:
        return True  # a broken CSV is still a CSV; the parser reports where
    return len(widths) <= 2 and max(widths) >= 2
