"""Fine-tuning datasets: detect a file's format by its content, parse it, validate it.

Everything here is plain synchronous code on bytes or a path, so the bot can run it in an
executor and the training process can run it again on its own. Malformed input raises
:class:`DatasetError`, whose message is a sentence for the user naming the line or row.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Minimum examples for training to make any sense; holding out validation needs a few more.
MIN_EXAMPLES = 2
MAX_SAMPLE_CHARS = 160


class DatasetError(ValueError):
    """A dataset that cannot be used; ``str()`` is a sentence for the user."""


class TrainTask(StrEnum):
    """The fine-tuning tasks the training worker knows."""

    TEXT_CLASSIFICATION = "text-classification"
    TOKEN_CLASSIFICATION = "token-classification"
    QUESTION_ANSWERING = "question-answering"
    CAUSAL_LM = "causal-lm"

    @classmethod
    def parse(cls, value: str) -> TrainTask:
        """The task for ``value`` (also accepts a few aliases); a clear error otherwise."""
        key = value.strip().lower().replace("_", "-")
        aliases = {
            "classification": cls.TEXT_CLASSIFICATION,
            "sentiment": cls.TEXT_CLASSIFICATION,
            "ner": cls.TOKEN_CLASSIFICATION,
            "qa": cls.QUESTION_ANSWERING,
            "generation": cls.CAUSAL_LM,
            "text-generation": cls.CAUSAL_LM,
            "clm": cls.CAUSAL_LM,
        }
        if key in aliases:
            return aliases[key]
        try:
            return cls(key)
        except ValueError:
            names = ", ".join(t.value for t in cls)
            raise DatasetError(f"Unknown task {value!r}; choose one of {names}.") from None


class DataFormat(StrEnum):
    """The content format a dataset was recognised as."""

    CSV = "csv"
    TSV = "tsv"
    JSONL = "jsonl"
    JSON_RECORDS = "json"
    CONLL = "conll"
    SQUAD = "squad"
    TEXT = "text"
    HUB = "hub"


@dataclass(frozen=True)
class ColumnSpec:
    """Explicit column names; any left ``None`` are detected."""

    text: str | None = None
    text_pair: str | None = None
    label: str | None = None
    # Names for label values, "0=negative,1=positive": the served model then says
    # "positive" rather than "1". Values not named keep their text.
    label_names: str | None = None

    def label_map(self) -> dict[str, str]:
        """``label_names`` as a mapping; raises :class:`DatasetError` when malformed."""
        if not self.label_names or not self.label_names.strip():
            return {}
        mapping: dict[str, str] = {}
        for part in self.label_names.split(","):
            value, sep, name = part.partition("=")
            value, name = value.strip(), name.strip()
            if not sep or not value or not name:
                raise DatasetError(
                    f"Label names must look like 0=negative,1=positive; {part.strip()!r} does not."
                )
            if value in mapping:
                raise DatasetError(f"Label names give the value {value!r} twice.")
            mapping[value] = name
        if len(set(mapping.values())) != len(mapping):
            raise DatasetError("Label names must be different from each other.")
        return mapping


@dataclass(frozen=True)
class ClassificationExample:
    text: str
    label: str
    text_pair: str | None = None
    line: int = 0


@dataclass(frozen=True)
class TokenExample:
    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    line: int = 0


@dataclass(frozen=True)
class Answer:
    text: str
    start: int


@dataclass(frozen=True)
class QAExample:
    id: str
    question: str
    context: str
    answers: tuple[Answer, ...]
    line: int = 0


@dataclass(frozen=True)
class TextExample:
    text: str
    line: int = 0


Example = ClassificationExample | TokenExample | QAExample | TextExample


@dataclass(frozen=True)
class DatasetSummary:
    """What the bot shows before a job starts: counts, labels and a few sample rows."""

    task: TrainTask
    format: DataFormat
    source: str
    num_examples: int
    labels: tuple[str, ...]
    label_counts: tuple[tuple[str, int], ...]
    columns: tuple[tuple[str, str], ...]
    samples: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    def describe(self) -> str:
        """A few lines of plain text for a Discord message or a terminal."""
        lines = [
            f"{self.source}: {self.num_examples:,} examples ({self.format.value}, {self.task})"
        ]
        if self.columns:
            lines.append("Columns: " + ", ".join(f"{role}={name!r}" for role, name in self.columns))
        if self.label_counts:
            counts = ", ".join(f"{label} ({n:,})" for label, n in self.label_counts[:20])
            more = f" and {len(self.label_counts) - 20} more" if len(self.label_counts) > 20 else ""
            lines.append(f"Labels: {counts}{more}")
        lines.extend(f"  e.g. {sample}" for sample in self.samples)
        lines.extend(f"Note: {warning}" for warning in self.warnings)
        return "\n".join(lines)


@dataclass(frozen=True)
class ParsedDataset:
    """Validated examples of one task, with the label set (sorted, stable ids)."""

    task: TrainTask
    format: DataFormat
    source: str
    examples: tuple[Any, ...]
    labels: tuple[str, ...] = ()
    columns: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.examples)

    def summary(self, n_samples: int = 3) -> DatasetSummary:
        """The summary shown to the user (label counts and ``n_samples`` sample rows)."""
        counts: Counter[str] = Counter()
        if self.task is TrainTask.TEXT_CLASSIFICATION:
            counts.update(ex.label for ex in self.examples)
        elif self.task is TrainTask.TOKEN_CLASSIFICATION:
            counts.update(tag for ex in self.examples for tag in ex.tags)
        label_counts = tuple((label, counts[label]) for label in self.labels)
        step = max(1, len(self.examples) // max(1, n_samples))
        samples = tuple(_sample_text(ex) for ex in self.examples[::step][:n_samples])
        return DatasetSummary(
            task=self.task,
            format=self.format,
            source=self.source,
            num_examples=len(self.examples),
            labels=self.labels,
            label_counts=label_counts,
            columns=self.columns,
            samples=samples,
            warnings=self.warnings,
        )

    def subset(self, examples: Sequence[Any], *, source: str | None = None) -> ParsedDataset:
        """The same dataset (same label set) restricted to ``examples``."""
        return replace(self, examples=tuple(examples), source=source or self.source)


# --------------------------------------------------------------------------- public API


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
    text = decode_text(raw, source)
    fmt = detect_format(text)
    logger.debug("dataset %s recognised as %s for %s", source, fmt, task)
    columns = columns or ColumnSpec()
    if task is TrainTask.TEXT_CLASSIFICATION:
        return _parse_classification(text, fmt, source, columns)
    if task is TrainTask.TOKEN_CLASSIFICATION:
        return _parse_tokens(text, fmt, source)
    if task is TrainTask.QUESTION_ANSWERING:
        return _parse_qa(text, fmt, source)
    return _parse_causal(text, fmt, source, columns)


def load_hub_dataset(
    name: str,
    task: TrainTask | str,
    *,
    config: str | None = None,
    split: str = "train",
    columns: ColumnSpec | None = None,
) -> ParsedDataset:
    """Load a Hugging Face hub dataset split and convert it with the same validation as files."""
    task = TrainTask.parse(task) if isinstance(task, str) else task
    import datasets  # deferred: heavy, and only this path needs it

    source = f"{name}{'/' + config if config else ''} [{split}]"
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # the library raises many unrelated types for "not found"
        logger.info("hub dataset %s failed to load: %r", source, exc)
        raise DatasetError(f"Couldn't load the hub dataset {source}: {exc}") from exc
    features = getattr(ds, "features", {}) or {}

    def names_of(column: str) -> list[str] | None:
        feature = features.get(column)
        inner = getattr(feature, "feature", feature)  # Sequence(ClassLabel) or ClassLabel
        names = getattr(inner, "names", None)
        return list(names) if names else None

    rows: list[tuple[str, dict[str, Any]]] = []
    for i, row in enumerate(ds, start=1):
        row = dict(row)
        for column in row:
            names = names_of(column)
            if names is None:
                continue
            value = row[column]
            if isinstance(value, list):
                row[column] = [names[v] if isinstance(v, int) and v >= 0 else v for v in value]
            elif isinstance(value, int) and value >= 0:
                row[column] = names[value]
        rows.append((f"row {i}", row))
    columns = columns or ColumnSpec()
    if task is TrainTask.TEXT_CLASSIFICATION:
        header = list(features) if features else (list(rows[0][1]) if rows else [])
        return _classification_from_rows(rows, header, DataFormat.HUB, source, columns)
    if task is TrainTask.TOKEN_CLASSIFICATION:
        return _tokens_from_rows(rows, DataFormat.HUB, source)
    if task is TrainTask.QUESTION_ANSWERING:
        return _qa_from_rows(rows, DataFormat.HUB, source)
    return _causal_from_rows(rows, DataFormat.HUB, source, columns)


def check_validation(train: ParsedDataset, validation: ParsedDataset) -> None:
    """Raise if the validation data uses labels the training data never shows."""
    if train.task is not validation.task:
        raise DatasetError("The validation data is for a different task than the training data.")
    known = set(train.labels)
    if train.task is TrainTask.TEXT_CLASSIFICATION:
        for ex in validation.examples:
            if ex.label not in known:
                raise DatasetError(
                    f"{validation.source} line {ex.line}: label {ex.label!r} does not occur in the "
                    f"training data (labels: {', '.join(train.labels)})."
                )
    elif train.task is TrainTask.TOKEN_CLASSIFICATION:
        for ex in validation.examples:
            for tag in ex.tags:
                if tag not in known:
                    raise DatasetError(
                        f"{validation.source} line {ex.line}: tag {tag!r} does not occur in the "
                        f"training data (tags: {', '.join(train.labels)})."
                    )


def split_holdout(
    dataset: ParsedDataset, fraction: float = 0.1, *, seed: int = 42, max_holdout: int = 2000
) -> tuple[ParsedDataset, ParsedDataset]:
    """Split off a seeded random validation part when no validation data was given."""
    n = len(dataset.examples)
    k = min(max_holdout, max(1, round(n * fraction)))
    if n - k < 1:
        raise DatasetError(
            f"{dataset.source} has only {n} examples: too few to hold some out for validation; "
            "give validation data too."
        )
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = set(order[:k])
    train = [ex for i, ex in enumerate(dataset.examples) if i not in held]
    val = [ex for i, ex in enumerate(dataset.examples) if i in held]
    return (
        dataset.subset(train),
        dataset.subset(val, source=f"{dataset.source} (held out {k})"),
    )


def sample_examples(dataset: ParsedDataset, limit: int, *, seed: int = 42) -> ParsedDataset:
    """At most ``limit`` examples, chosen at random with ``seed`` (order kept)."""
    if limit <= 0 or len(dataset.examples) <= limit:
        return dataset
    picked = sorted(random.Random(seed).sample(range(len(dataset.examples)), limit))
    return dataset.subset([dataset.examples[i] for i in picked])


# --------------------------------------------------------------------------- decoding


_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"SQLite format 3", "an SQLite database"),
    (b"\x7fELF", "a program"),
    (b"PAR1", "a Parquet file"),
)


def decode_text(data: bytes, source: str) -> str:
    """UTF-8 (BOM allowed) or BOM-marked UTF-16 text with ``\\n`` line ends; else DatasetError."""
    if not data.strip():
        raise DatasetError(f"{source} is empty.")
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise DatasetError(
                f"{source} is {what}, not a text data file; upload the CSV/TSV/JSONL/CoNLL/JSON/text "
                "file itself."
            )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise DatasetError(f"{source} starts like UTF-16 text but does not decode.") from None
    else:
        nul = data.find(b"\x00")
        if nul >= 0:
            line = data.count(b"\n", 0, nul) + 1
            raise DatasetError(
                f"{source} looks like a binary file (a zero byte on line {line}); "
                "upload a UTF-8 text file."
            )
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise DatasetError(
                f"{source} is not UTF-8 text: line {line} has an invalid byte "
                f"(0x{data[exc.start]:02x}); save the file as UTF-8 and try again."
            ) from None
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise DatasetError(f"{source} is empty.")
    return text


# --------------------------------------------------------------------------- detection

_TAG_RE = re.compile(r"^(O|[BIESLU]-\S+)$")


def detect_format(text: str) -> DataFormat:
    """The format of decoded text, judged by its content (extensions lie: MSRP ships as .txt)."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            return DataFormat.JSONL  # one object a line, or broken: the JSONL parser names the line
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


def _looks_conll(lines: list[str]) -> bool:
    body = [line for line in lines if not line.startswith("-DOCSTART-")]
    if not body:
        return bool(lines)
    tagged = 0
    for line in body:
        fields = line.split()
        if 2 <= len(fields) <= 10 and _TAG_RE.match(fields[-1]):
            tagged += 1
    return tagged >= 0.9 * len(body)


def _consistent_csv(lines: list[str]) -> bool:
    delimiter = _csv_delimiter(lines[0])
    try:
        widths = {
            len(row) for row in csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)
        }
    except csv.Error:
        return True  # a broken CSV is still a CSV; the parser reports where
    return len(widths) <= 2 and max(widths) >= 2


def _csv_delimiter(header: str) -> str:
    return ";" if header.count(";") > header.count(",") else ","


# --------------------------------------------------------------------------- row readers

Row = tuple[str, dict[str, Any]]  # (locator such as "line 12", values)


def _read_tsv(text: str, source: str) -> tuple[list[str], list[Row]]:
    # Split on tabs, no quoting: MRPC sentences contain raw quote characters.
    lines = text.split("\n")
    header = [name.strip() for name in lines[0].split("\t")]
    rows: list[Row] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        while len(fields) > len(header) and not fields[-1].strip():
            fields.pop()
        if len(fields) != len(header):
            raise DatasetError(
                f"{source} line {number} has {len(fields)} tab-separated fields but the header "
                f"has {len(header)} ({', '.join(header)})."
            )
        rows.append((f"line {number}", dict(zip(header, fields, strict=True))))
    return header, rows


def _read_csv(text: str, source: str) -> tuple[list[str], list[Row]]:
    delimiter = _csv_delimiter(text.split("\n", 1)[0])
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, strict=True)
    rows: list[Row] = []
    header: list[str] = []
    last_line = 0
    try:
        for record in reader:
            start = last_line + 1
            last_line = reader.line_num
            if not record or not any(field.strip() for field in record):
                continue
            if not header:
                header = [name.strip() for name in record]
                continue
            if len(record) != len(header):
                raise DatasetError(
                    f"{source} line {start} has {len(record)} fields but the header has "
                    f"{len(header)} ({', '.join(header)})."
                )
            rows.append((f"line {start}", dict(zip(header, record, strict=True))))
    except csv.Error as exc:
        raise DatasetError(f"{source} line {reader.line_num} is not valid CSV: {exc}.") from None
    return header, rows


def _read_jsonl(text: str, source: str) -> tuple[list[str], list[Row]]:
    rows: list[Row] = []
    header: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"{source} line {number} is not valid JSON ({exc.msg} at column {exc.colno})."
            ) from None
        if not isinstance(obj, dict):
            raise DatasetError(f"{source} line {number} is not a JSON object ({{...}}).")
        for key in obj:
            if key not in header:
                header.append(key)
        rows.append((f"line {number}", obj))
    return header, rows


def _read_json_records(text: str, source: str) -> tuple[list[str], list[Row]]:
    records = json.loads(text)
    rows: list[Row] = []
    header: list[str] = []
    for i, obj in enumerate(records, start=1):
        if not isinstance(obj, dict):
            raise DatasetError(f"{source} record {i} is not a JSON object ({{...}}).")
        for key in obj:
            if key not in header:
                header.append(key)
        rows.append((f"record {i}", obj))
    return header, rows


def _read_rows(text: str, fmt: DataFormat, source: str) -> tuple[list[str], list[Row]]:
    if fmt is DataFormat.TSV:
        return _read_tsv(text, source)
    if fmt is DataFormat.CSV:
        return _read_csv(text, source)
    if fmt is DataFormat.JSONL:
        return _read_jsonl(text, source)
    if fmt is DataFormat.JSON_RECORDS:
        return _read_json_records(text, source)
    raise AssertionError(fmt)


# --------------------------------------------------------------------------- classification

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


def _parse_classification(
    text: str, fmt: DataFormat, source: str, columns: ColumnSpec
) -> ParsedDataset:
    first_line = text.lstrip().split("\n", 1)[0]
    if fmt is DataFormat.TEXT and ("," in first_line or ";" in first_line):
        # Rows of uneven width: read it as the CSV it claims to be, so the bad line is named.
        fmt = DataFormat.CSV
    if fmt in (DataFormat.CONLL, DataFormat.SQUAD, DataFormat.TEXT):
        raise DatasetError(
            f"{source} looks like {_format_name(fmt)}, not a table; text classification needs "
            "CSV, TSV or JSONL with a text column and a label column."
        )
    header, rows = _read_rows(text, fmt, source)
    if fmt is DataFormat.TSV and not columns.text and not columns.label:
        header, rows = _maybe_headerless(text, header, rows, source)
    return _classification_from_rows(rows, header, fmt, source, columns)


def _maybe_headerless(
    text: str, header: list[str], rows: list[Row], source: str
) -> tuple[list[str], list[Row]]:
    """A two-column TSV without a header row (label and text, either order)."""
    known = {n for n in _TEXT_NAMES + _LABEL_NAMES} | {n for p in _PAIR_NAMES for n in p}
    if len(header) != 2 or any(h.strip().lower() in known for h in header):
        return header, rows
    lines = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    values = [line.split("\t") for _, line in lines]
    distinct = [len({v[i].strip() for v in values if len(v) == 2}) for i in range(2)]
    label_index = 0 if distinct[0] <= distinct[1] else 1
    names = ["label", "text"] if label_index == 0 else ["text", "label"]
    rebuilt: list[Row] = []
    for number, line in lines:
        fields = line.split("\t")
        if len(fields) != 2:
            raise DatasetError(
                f"{source} line {number} has {len(fields)} tab-separated fields, not 2."
            )
        rebuilt.append((f"line {number}", dict(zip(names, fields, strict=True))))
    return names, rebuilt


def _classification_from_rows(
    rows: Sequence[Row], header: Sequence[str], fmt: DataFormat, source: str, columns: ColumnSpec
) -> ParsedDataset:
    picked = _pick_columns(header, columns, source)
    assert picked.text is not None and picked.label is not None
    names = columns.label_map()
    examples: list[ClassificationExample] = []
    for where, row in rows:
        line = _line_number(where)
        try:
            label = _label_text(row.get(picked.label))
        except TypeError as exc:
            raise DatasetError(
                f"{source} {where}: the label is {exc}; give one label per row."
            ) from None
        if not label:
            raise DatasetError(f"{source} {where} has no label in column {picked.label!r}.")
        try:
            sentence = _field_text(row.get(picked.text))
            pair = _field_text(row.get(picked.text_pair)) if picked.text_pair else None
        except TypeError as exc:
            raise DatasetError(f"{source} {where}: the text is {exc}, not a string.") from None
        if not sentence:
            raise DatasetError(f"{source} {where} has no text in column {picked.text!r}.")
        if picked.text_pair and not pair:
            raise DatasetError(f"{source} {where} has no text in column {picked.text_pair!r}.")
        examples.append(ClassificationExample(sentence, names.get(label, label), pair, line))
    _check_count(examples, source)
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


# --------------------------------------------------------------------------- token classification


def _parse_tokens(text: str, fmt: DataFormat, source: str) -> ParsedDataset:
    if fmt is DataFormat.CONLL:
        return _parse_conll(text, source)
    if fmt in (DataFormat.JSONL, DataFormat.JSON_RECORDS):
        _, rows = _read_rows(text, fmt, source)
        return _tokens_from_rows(rows, fmt, source)
    if fmt in (DataFormat.TSV, DataFormat.TEXT, DataFormat.CSV):
        # Not recognised as CoNLL: parse it as CoNLL anyway so the user learns which line is wrong.
        return _parse_conll(text, source)
    raise DatasetError(
        f"{source} looks like {_format_name(fmt)}; token classification needs CoNLL "
        "(one 'token ... TAG' per line, blank line between sentences) or JSONL with tokens and tags."
    )


def _check_tag(tag: str, source: str, where: str) -> None:
    if not _TAG_RE.match(tag):
        raise DatasetError(
            f"{source} {where}: tag {tag!r} is not an IOB tag (O, B-TYPE or I-TYPE); each line "
            "needs the token first and its tag last."
        )


def _parse_conll(text: str, source: str) -> ParsedDataset:
    examples: list[TokenExample] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0

    def flush() -> None:
        nonlocal tokens, tags
        if tokens:
            examples.append(TokenExample(tuple(tokens), tuple(tags), start))
        tokens, tags = [], []

    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            flush()
            continue
        if line.startswith("-DOCSTART-"):
            flush()
            continue
        fields = line.split()
        if len(fields) < 2:
            raise DatasetError(
                f"{source} line {number} has only one field ({fields[0]!r}); each line needs a "
                "token and its tag separated by a space or tab."
            )
        _check_tag(fields[-1], source, f"line {number}")
        if not tokens:
            start = number
        tokens.append(fields[0])
        tags.append(fields[-1])
    flush()
    return _token_dataset(examples, DataFormat.CONLL, source)


_TOKEN_KEYS = ("tokens", "words")
_TAG_KEYS = ("tags", "ner_tags", "labels", "ner")


def _tokens_from_rows(rows: Sequence[Row], fmt: DataFormat, source: str) -> ParsedDataset:
    examples: list[TokenExample] = []
    for where, row in rows:
        token_key = next((k for k in _TOKEN_KEYS if k in row), None)
        tag_key = next((k for k in _TAG_KEYS if k in row), None)
        if token_key is None or tag_key is None:
            raise DatasetError(
                f"{source} {where} needs a 'tokens' list and a 'tags' list; it has "
                f"{', '.join(map(repr, row)) or 'no keys'}."
            )
        tokens, tags = row[token_key], row[tag_key]
        if not isinstance(tokens, list) or not isinstance(tags, list):
            raise DatasetError(f"{source} {where}: '{token_key}' and '{tag_key}' must be lists.")
        if len(tokens) != len(tags):
            raise DatasetError(
                f"{source} {where} has {len(tokens)} tokens but {len(tags)} tags; they must match."
            )
        if not tokens:
            continue
        if any(not isinstance(tag, str) for tag in tags):
            raise DatasetError(
                f"{source} {where}: tags must be strings such as 'B-PER' or 'O', not numbers."
            )
        for tag in tags:
            _check_tag(tag, source, where)
        examples.append(
            TokenExample(tuple(str(t) for t in tokens), tuple(tags), _line_number(where))
        )
    return _token_dataset(examples, fmt, source)


def _token_dataset(examples: list[TokenExample], fmt: DataFormat, source: str) -> ParsedDataset:
    _check_count(examples, source)
    tags = {tag for ex in examples for tag in ex.tags}
    # "O" first, then entity types grouped B- before I-, so ids are stable and readable.
    labels = tuple(sorted(tags, key=lambda t: (t != "O", t[2:], t[:1])))
    return ParsedDataset(
        TrainTask.TOKEN_CLASSIFICATION,
        fmt,
        source,
        tuple(examples),
        labels,
        (("tokens", "first field"), ("tags", "last field")) if fmt is DataFormat.CONLL else (),
    )


# --------------------------------------------------------------------------- question answering


def _parse_qa(text: str, fmt: DataFormat, source: str) -> ParsedDataset:
    if fmt is DataFormat.SQUAD:
        return _parse_squad(text, source)
    if fmt in (DataFormat.JSONL, DataFormat.JSON_RECORDS):
        _, rows = _read_rows(text, fmt, source)
        return _qa_from_rows(rows, fmt, source)
    raise DatasetError(
        f"{source} looks like {_format_name(fmt)}; question answering needs SQuAD JSON "
        "(data → paragraphs → qas with answers and answer_start) or JSONL with question, context "
        "and answers."
    )


def _parse_squad(text: str, source: str) -> ParsedDataset:
    obj = json.loads(text)
    rows: list[Row] = []
    for a, article in enumerate(obj["data"], start=1):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise DatasetError(f"{source}: article {a} has no 'paragraphs' list.")
        for p, paragraph in enumerate(article["paragraphs"], start=1):
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("qas"), list):
                raise DatasetError(f"{source}: article {a} paragraph {p} has no 'qas' list.")
            context = paragraph.get("context")
            for q, qa in enumerate(paragraph["qas"], start=1):
                if not isinstance(qa, dict):
                    raise DatasetError(
                        f"{source}: article {a} paragraph {p} question {q} is not an object."
                    )
                row = dict(qa)
                row["context"] = context
                ident = qa.get("id")
                where = (
                    f"question {ident!r}" if ident else f"article {a} paragraph {p} question {q}"
                )
                rows.append((where, row))
    return _qa_from_rows(rows, DataFormat.SQUAD, source)


def _answers_of(row: Mapping[str, Any], source: str, where: str) -> list[Answer]:
    answers = row.get("answers")
    result: list[Answer] = []
    if isinstance(answers, dict):  # the hub layout: {"text": [...], "answer_start": [...]}
        texts, starts = answers.get("text") or [], answers.get("answer_start") or []
        if len(texts) != len(starts):
            raise DatasetError(
                f"{source} {where}: answers.text and answers.answer_start differ in length."
            )
        pairs = list(zip(texts, starts, strict=True))
    elif isinstance(answers, list):
        pairs = []
        for answer in answers:
            if not isinstance(answer, dict) or "text" not in answer or "answer_start" not in answer:
                raise DatasetError(
                    f"{source} {where}: each answer needs 'text' and 'answer_start'."
                )
            pairs.append((answer["text"], answer["answer_start"]))
    elif "answer" in row and "answer_start" in row:
        pairs = [(row["answer"], row["answer_start"])]
    else:
        raise DatasetError(
            f"{source} {where} has no answers (expected 'answers' with 'text' and 'answer_start')."
        )
    for text, start in pairs:
        if not isinstance(text, str) or not text.strip():
            raise DatasetError(f"{source} {where} has an empty answer text.")
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise DatasetError(
                f"{source} {where}: answer_start {start!r} is not a character offset."
            )
        result.append(Answer(text, start))
    return result


def _qa_from_rows(rows: Sequence[Row], fmt: DataFormat, source: str) -> ParsedDataset:
    examples: list[QAExample] = []
    skipped = 0
    for i, (where, row) in enumerate(rows, start=1):
        question, context = row.get("question"), row.get("context")
        if not isinstance(question, str) or not question.strip():
            raise DatasetError(f"{source} {where} has no question text.")
        if not isinstance(context, str) or not context.strip():
            raise DatasetError(f"{source} {where} has no context text.")
        answers = [] if row.get("is_impossible") else _answers_of(row, source, where)
        if not answers:
            skipped += 1  # SQuAD 2.0 unanswerable questions: extractive training needs an answer
            continue
        for answer in answers:
            if context[answer.start : answer.start + len(answer.text)] != answer.text:
                raise DatasetError(
                    f"{source} {where}: the answer {answer.text!r} is not at answer_start "
                    f"{answer.start} of its context."
                )
        ident = str(row.get("id") or i)
        examples.append(
            QAExample(ident, question.strip(), context, tuple(answers), _line_number(where))
        )
    _check_count(examples, source)
    warnings = (
        (f"{skipped} unanswerable question(s) skipped: extractive QA trains on answered ones.",)
        if skipped
        else ()
    )
    return ParsedDataset(
        TrainTask.QUESTION_ANSWERING, fmt, source, tuple(examples), (), (), warnings
    )


# --------------------------------------------------------------------------- causal LM


def _parse_causal(text: str, fmt: DataFormat, source: str, columns: ColumnSpec) -> ParsedDataset:
    if fmt in (DataFormat.JSONL, DataFormat.JSON_RECORDS):
        _, rows = _read_rows(text, fmt, source)
        return _causal_from_rows(rows, fmt, source, columns)
    if fmt is DataFormat.SQUAD:
        raise DatasetError(f"{source} is SQuAD JSON; causal LM training needs plain text or JSONL.")
    # Any other text trains as it is; paragraphs (or lines) are the unit for holding out.
    units: list[TextExample] = []
    paragraph: list[str] = []
    start = 0
    for number, line in enumerate([*text.split("\n"), ""], start=1):
        if line.strip():
            if not paragraph:
                start = number
            paragraph.append(line.rstrip())
        elif paragraph:
            units.append(TextExample("\n".join(paragraph), start))
            paragraph = []
    if len(units) < 2:
        units = [
            TextExample(line.rstrip(), n)
            for n, line in enumerate(text.split("\n"), start=1)
            if line.strip()
        ]
    _check_count(units, source)
    return ParsedDataset(TrainTask.CAUSAL_LM, DataFormat.TEXT, source, tuple(units))


def _causal_from_rows(
    rows: Sequence[Row], fmt: DataFormat, source: str, columns: ColumnSpec
) -> ParsedDataset:
    key = columns.text or "text"
    examples: list[TextExample] = []
    for where, row in rows:
        value = row.get(key)
        if not isinstance(value, str):
            raise DatasetError(f"{source} {where} has no {key!r} string.")
        if value.strip():
            examples.append(TextExample(value, _line_number(where)))
    _check_count(examples, source)
    return ParsedDataset(TrainTask.CAUSAL_LM, fmt, source, tuple(examples), (), (("text", key),))


# --------------------------------------------------------------------------- helpers


def _check_count(examples: Sequence[Any], source: str) -> None:
    if len(examples) < MIN_EXAMPLES:
        raise DatasetError(
            f"{source} has {len(examples)} usable example(s); at least {MIN_EXAMPLES} are needed."
        )


def _line_number(where: str) -> int:
    match = re.search(r"(\d+)$", where)
    return int(match.group(1)) if match and where.startswith(("line", "row", "record")) else 0


def _format_name(fmt: DataFormat) -> str:
    return {
        DataFormat.CONLL: "CoNLL (token and tag per line)",
        DataFormat.SQUAD: "SQuAD JSON",
        DataFormat.TEXT: "plain text",
        DataFormat.CSV: "CSV",
        DataFormat.TSV: "TSV",
        DataFormat.JSONL: "JSONL",
        DataFormat.JSON_RECORDS: "a JSON list",
        DataFormat.HUB: "a hub dataset",
    }[fmt]


def _sample_text(example: Any) -> str:
    if isinstance(example, ClassificationExample):
        text = (
            example.text if example.text_pair is None else f"{example.text} ||| {example.text_pair}"
        )
        out = f"[{example.label}] {text}"
    elif isinstance(example, TokenExample):
        out = " ".join(
            tok if tag == "O" else f"{tok}/{tag}"
            for tok, tag in zip(example.tokens, example.tags, strict=True)
        )
    elif isinstance(example, QAExample):
        out = f"Q: {example.question} A: {example.answers[0].text}"
    else:
        out = example.text.replace("\n", " ")
    return out if len(out) <= MAX_SAMPLE_CHARS else out[: MAX_SAMPLE_CHARS - 1] + "…"


def iter_texts(dataset: ParsedDataset) -> Iterator[str]:
    """The raw texts of a causal-LM dataset."""
    for example in dataset.examples:
        yield example.text
