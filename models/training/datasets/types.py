"""The shared vocabulary of fine-tuning data: tasks, formats, locations, examples, datasets.

Every parser in this package produces a :class:`ParsedDataset` of one example type; its
:meth:`~ParsedDataset.summary` is what the bot shows before a job starts. Malformed input
raises :class:`DatasetError`, whose message is a sentence for the user that names the row
through :meth:`Location.describe`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, ClassVar

# Minimum examples for training to make any sense; holding out validation needs a few more.
MIN_EXAMPLES = 2
MAX_SAMPLE_CHARS = 160
# The longest one example may be (its text fields together, in characters): far more than any
# model reads (8,192 tokens at most), so longer is a mistake or an attempt to exhaust memory.
MAX_EXAMPLE_CHARS = 100_000


class DatasetError(ValueError):
    """A dataset that cannot be used; ``str()`` is a sentence for the user."""


class TrainTask(StrEnum):
    """The fine-tuning tasks the training worker knows (see ``models.training.tasks``)."""

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

    def describe(self) -> str:
        """The format as a phrase for sentences ("looks like CoNLL (token and tag per line)")."""
        return _FORMAT_NAMES[self]


_FORMAT_NAMES = {
    DataFormat.CONLL: "CoNLL (token and tag per line)",
    DataFormat.SQUAD: "SQuAD JSON",
    DataFormat.TEXT: "plain text",
    DataFormat.CSV: "CSV",
    DataFormat.TSV: "TSV",
    DataFormat.JSONL: "JSONL",
    DataFormat.JSON_RECORDS: "a JSON list",
    DataFormat.HUB: "a hub dataset",
}


@dataclass(frozen=True)
class Location:
    """Where a row of a dataset is. ``describe()`` names it in error sentences: "moods.csv line 4".

    Exactly one way of counting applies: a line of a text file, an item of a JSON list, a row
    of a hub split, or a SQuAD question (by its id, else by its place in the file).
    """

    source: str
    line: int | None = None
    record: int | None = None
    row: int | None = None
    question_id: str | None = None
    # SQuAD question without an id: (article, paragraph, question), each counted from 1.
    squad_position: tuple[int, int, int] | None = None

    def describe(self) -> str:
        if self.line is not None:
            return f"{self.source} line {self.line}"
        if self.record is not None:
            return f"{self.source} record {self.record}"
        if self.row is not None:
            return f"{self.source} row {self.row}"
        if self.question_id:
            return f"{self.source} question {self.question_id!r}"
        if self.squad_position is not None:
            article, paragraph, question = self.squad_position
            return f"{self.source} article {article} paragraph {paragraph} question {question}"
        return self.source

    @property
    def number(self) -> int:
        """The line, record or row number; 0 for a SQuAD question."""
        return self.line or self.record or self.row or 0


Row = tuple[Location, dict[str, Any]]  # one record of a table, JSON file or hub split


@dataclass(frozen=True)
class DataLimits:
    """Bounds on what one data source may hold (None: no bound; the operator's CLI)."""

    max_rows: int | None = None  # rows, records or examples read from one file or split
    max_bytes: int | None = None  # a hub split's size as the hub reports it


def check_row_limit(count: int, max_rows: int | None, where: Location) -> None:
    """Raise once more than ``max_rows`` rows have been read (``count`` is the row at ``where``)."""
    if max_rows is not None and count > max_rows:
        raise DatasetError(
            f"{where.describe()} goes past the limit of {max_rows:,} examples per data source; "
            "use fewer rows."
        )


def check_example_size(chars: int, where: Location) -> None:
    """Raise for an example longer than :data:`MAX_EXAMPLE_CHARS`."""
    if chars > MAX_EXAMPLE_CHARS:
        raise DatasetError(
            f"{where.describe()} is {chars:,} characters long; an example may have at most "
            f"{MAX_EXAMPLE_CHARS:,}."
        )


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


# --------------------------------------------------------------------------- examples
# Each example type knows which label values it uses (for label counts and for checking
# validation data against the training labels) and how it reads as one sample line.


@dataclass(frozen=True)
class ClassificationExample:
    text: str
    label: str
    text_pair: str | None = None
    where: Location | None = None

    LABEL_NOUN: ClassVar[str] = "label"

    @property
    def line(self) -> int:
        return self.where.number if self.where else 0

    def label_values(self) -> tuple[str, ...]:
        return (self.label,)

    def show(self) -> str:
        text = self.text if self.text_pair is None else f"{self.text} ||| {self.text_pair}"
        return f"[{self.label}] {text}"


@dataclass(frozen=True)
class TokenExample:
    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    where: Location | None = None

    LABEL_NOUN: ClassVar[str] = "tag"

    @property
    def line(self) -> int:
        return self.where.number if self.where else 0

    def label_values(self) -> tuple[str, ...]:
        return self.tags

    def show(self) -> str:
        return " ".join(
            tok if tag == "O" else f"{tok}/{tag}"
            for tok, tag in zip(self.tokens, self.tags, strict=True)
        )


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
    where: Location | None = None

    LABEL_NOUN: ClassVar[str] = "label"

    @property
    def line(self) -> int:
        return self.where.number if self.where else 0

    def label_values(self) -> tuple[str, ...]:
        return ()

    def show(self) -> str:
        return f"Q: {self.question} A: {self.answers[0].text}"


@dataclass(frozen=True)
class TextExample:
    text: str
    where: Location | None = None

    LABEL_NOUN: ClassVar[str] = "label"

    @property
    def line(self) -> int:
        return self.where.number if self.where else 0

    def label_values(self) -> tuple[str, ...]:
        return ()

    def show(self) -> str:
        return self.text.replace("\n", " ")


Example = ClassificationExample | TokenExample | QAExample | TextExample


# --------------------------------------------------------------------------- datasets


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
        counts: Counter[str] = Counter(value for ex in self.examples for value in ex.label_values())
        label_counts = tuple((label, counts[label]) for label in self.labels)
        step = max(1, len(self.examples) // max(1, n_samples))
        samples = tuple(_clip(ex.show()) for ex in self.examples[::step][:n_samples])
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


def check_count(examples: Sequence[Any], source: str) -> None:
    """Raise unless there are enough examples to train on."""
    if len(examples) < MIN_EXAMPLES:
        raise DatasetError(
            f"{source} has {len(examples)} usable example(s); at least {MIN_EXAMPLES} are needed."
        )


def _clip(text: str) -> str:
    return text if len(text) <= MAX_SAMPLE_CHARS else text[: MAX_SAMPLE_CHARS - 1] + "…"
