"""Text classification data: a text column (or a pair of them) and a label column.

Columns are found by name (``sentence``, ``#1 String``/``#2 String``, ``label``...) unless
given; a two-column TSV without a header is read as label and text in either order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from models.training.datasets.rows import read_rows
from models.training.datasets.types import (
    ClassificationExample,
    ColumnSpec,
    DataFormat,
    DatasetError,
    Location,
    ParsedDataset,
    Row,
    TrainTask,
    check_count,
    check_example_size,
    check_row_limit,
)

_TEXT_NAMES = (
    "text",
    "sentence",
    "content",
    "review",
    "document",
    "comment",
    "utterance",
    "tweet",
    "body",
    "message",
    "input",
    "question",
)
_PAIR_NAMES = (
    ("sentence1", "sentence2"),
    ("#1 string", "#2 string"),
    ("text_a", "text_b"),
    ("text1", "text2"),
    ("text", "text_pair"),
    ("question1", "question2"),
    ("premise", "hypothesis"),
    ("question", "sentence"),
)
_LABEL_NAMES = (
    "label",
    "labels",
    "quality",
    "class",
    "category",
    "sentiment",
    "target",
    "gold_label",
    "y",
)


def parse_classification(
    text: str, fmt: DataFormat, source: str, columns: ColumnSpec, *, max_rows: int | None = None
) -> ParsedDataset:
    """A classification dataset from a file's decoded text."""
    first_line = text.lstrip().split("\n", 1)[0]
    if fmt is DataFormat.TEXT and ("," in first_line or ";" in first_line):
        # Rows of uneven width: read it as the CSV it claims to be, so the bad line is named.
        fmt = DataFormat.CSV
    if fmt in (DataFormat.CONLL, DataFormat.SQUAD, DataFormat.TEXT):
        raise DatasetError(
            f"{source} looks like {fmt.describe()}, not a table; text classification needs "
            "CSV, TSV or JSONL with a text column and a label column."
        )
    if fmt is DataFormat.TSV and not columns.text and not columns.label:
        first = [name.strip() for name in text.split("\n", 1)[0].split("\t")]
        if _headerless(first):
            header, rows = _read_headerless(text, source, max_rows)
            return classification_from_rows(rows, header, fmt, source, columns)
    header, rows = read_rows(text, fmt, source, max_rows=max_rows)
    return classification_from_rows(rows, header, fmt, source, columns)


def classification_from_rows(
    rows: Sequence[Row], header: Sequence[str], fmt: DataFormat, source: str, columns: ColumnSpec
) -> ParsedDataset:
    """A classification dataset from rows of values (a table, JSON or a hub split)."""
    picked = _pick_columns(header, columns, source)
    assert picked.text is not None and picked.label is not None
    names = columns.label_map()
    examples: list[ClassificationExample] = []
    for where, row in rows:
        try:
            label = _label_text(row.get(picked.label))
        except TypeError as exc:
            raise DatasetError(
                f"{where.describe()}: the label is {exc}; give one label per row."
            ) from None
        if not label:
            raise DatasetError(f"{where.describe()} has no label in column {picked.label!r}.")
        try:
            sentence = _field_text(row.get(picked.text))
            pair = _field_text(row.get(picked.text_pair)) if picked.text_pair else None
        except TypeError as exc:
            raise DatasetError(f"{where.describe()}: the text is {exc}, not a string.") from None
        if not sentence:
            raise DatasetError(f"{where.describe()} has no text in column {picked.text!r}.")
        if picked.text_pair and not pair:
            raise DatasetError(f"{where.describe()} has no text in column {picked.text_pair!r}.")
        check_example_size(len(sentence) + len(pair or ""), where)
        examples.append(ClassificationExample(sentence, names.get(label, label), pair, where))
    check_count(examples, source)
    labels = _sort_labels(ex.label for ex in examples)
    if len(labels) < 2:
        raise DatasetError(
            f"{source}: every row has the label {labels[0]!r}; classification needs at least two "
            "different labels."
        )
    used = [("text", picked.text)]
    if picked.text_pair:
        used.append(("text_pair", picked.text_pair))
    used.append(("label", picked.label))
    return ParsedDataset(
        TrainTask.TEXT_CLASSIFICATION, fmt, source, tuple(examples), labels, tuple(used)
    )


def _headerless(first_line: list[str]) -> bool:
    """Whether a TSV's first line is a row rather than a header: two fields, neither a name
    we know."""
    known = {n for n in _TEXT_NAMES + _LABEL_NAMES} | {n for p in _PAIR_NAMES for n in p}
    return len(first_line) == 2 and not any(h.lower() in known for h in first_line)


def _read_headerless(text: str, source: str, max_rows: int | None) -> tuple[list[str], list[Row]]:
    """A two-column TSV without a header row (label and text, either order)."""
    lines: list[tuple[int, str]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            check_row_limit(len(lines) + 1, max_rows, Location(source, line=number))
            lines.append((number, line))
    values = [line.split("\t") for _, line in lines]
    distinct = [len({v[i].strip() for v in values if len(v) == 2}) for i in range(2)]
    label_index = 0 if distinct[0] <= distinct[1] else 1
    names = ["label", "text"] if label_index == 0 else ["text", "label"]
    rebuilt: list[Row] = []
    for number, line in lines:
        fields = line.split("\t")
        where = Location(source, line=number)
        if len(fields) != 2:
            raise DatasetError(f"{where.describe()} has {len(fields)} tab-separated fields, not 2.")
        rebuilt.append((where, dict(zip(names, fields, strict=True))))
    return names, rebuilt


def _find_column(header: Sequence[str], wanted: str) -> str | None:
    for name in header:
        if name.strip().lower() == wanted.strip().lower():
            return name
    return None


def _pick_columns(header: Sequence[str], columns: ColumnSpec, source: str) -> ColumnSpec:
    listed = ", ".join(repr(h) for h in header)

    def explicit(name: str | None, role: str) -> str | None:
        if name is None:
            return None
        found = _find_column(header, name)
        if found is None:
            raise DatasetError(f"{source} has no {role} column {name!r}; its columns are {listed}.")
        return found

    text = explicit(columns.text, "text")
    pair = explicit(columns.text_pair, "text-pair")
    label = explicit(columns.label, "label")
    if text is None:
        for first, second in _PAIR_NAMES:
            a, b = _find_column(header, first), _find_column(header, second)
            if a and b:
                text, pair = a, pair or b
                break
    if text is None:
        for candidate in _TEXT_NAMES:
            text = _find_column(header, candidate)
            if text:
                break
    if label is None:
        for candidate in _LABEL_NAMES:
            label = _find_column(header, candidate)
            if label:
                break
    if text is None:
        raise DatasetError(
            f"{source}: couldn't find the text column among {listed}; name it explicitly "
            "(text column option)."
        )
    if label is None:
        raise DatasetError(
            f"{source}: couldn't find the label column among {listed}; name it explicitly "
            "(label column option)."
        )
    if label in (text, pair):
        raise DatasetError(f"{source}: the label column {label!r} is also used as a text column.")
    return ColumnSpec(text=text, text_pair=pair, label=label)


def _label_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, dict)):
        raise TypeError("a list or object")
    return str(value).strip()


def _field_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        raise TypeError("a list or object")
    return str(value).strip()


def _sort_labels(labels: Iterable[str]) -> tuple[str, ...]:
    unique = set(labels)
    try:
        return tuple(sorted(unique, key=int))  # "0","1","10" in numeric order
    except ValueError:
        return tuple(sorted(unique))
