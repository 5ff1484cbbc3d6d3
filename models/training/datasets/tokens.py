"""Token classification data: CoNLL ("token ... TAG" a line, blank lines between sentences)
or JSON rows with a list of tokens and a list of IOB tags."""

from __future__ import annotations

from collections.abc import Sequence

from models.training.datasets.detection import TAG_RE
from models.training.datasets.rows import read_rows
from models.training.datasets.types import (
    ColumnSpec,
    DataFormat,
    DatasetError,
    Location,
    ParsedDataset,
    Row,
    TokenExample,
    TrainTask,
    check_count,
    check_example_size,
    check_row_limit,
)

_TOKEN_KEYS = ("tokens", "words")
_TAG_KEYS = ("tags", "ner_tags", "labels", "ner")


def parse_tokens(
    text: str, fmt: DataFormat, source: str, columns: ColumnSpec, *, max_rows: int | None = None
) -> ParsedDataset:
    """A token classification dataset from a file's decoded text (``columns`` is not used)."""
    if fmt is DataFormat.CONLL:
        return _parse_conll(text, source, max_rows)
    if fmt in (DataFormat.JSONL, DataFormat.JSON_RECORDS):
        header, rows = read_rows(text, fmt, source, max_rows=max_rows)
        return tokens_from_rows(rows, header, fmt, source, columns)
    if fmt in (DataFormat.TSV, DataFormat.TEXT, DataFormat.CSV):
        # Not recognised as CoNLL: parse it as CoNLL anyway so the user learns which line is wrong.
        return _parse_conll(text, source, max_rows)
    raise DatasetError(
        f"{source} looks like {fmt.describe()}; token classification needs CoNLL "
        "(one 'token ... TAG' per line, blank line between sentences) or JSONL with tokens and tags."
    )


def tokens_from_rows(
    rows: Sequence[Row], header: Sequence[str], fmt: DataFormat, source: str, columns: ColumnSpec
) -> ParsedDataset:
    """A token classification dataset from rows with a token list and a tag list."""
    examples: list[TokenExample] = []
    for where, row in rows:
        token_key = next((k for k in _TOKEN_KEYS if k in row), None)
        tag_key = next((k for k in _TAG_KEYS if k in row), None)
        if token_key is None or tag_key is None:
            raise DatasetError(
                f"{where.describe()} needs a 'tokens' list and a 'tags' list; it has "
                f"{', '.join(map(repr, row)) or 'no keys'}."
            )
        tokens, tags = row[token_key], row[tag_key]
        if not isinstance(tokens, list) or not isinstance(tags, list):
            raise DatasetError(f"{where.describe()}: '{token_key}' and '{tag_key}' must be lists.")
        if len(tokens) != len(tags):
            raise DatasetError(
                f"{where.describe()} has {len(tokens)} tokens but {len(tags)} tags; they must "
                "match."
            )
        if not tokens:
            continue
        if any(not isinstance(tag, str) for tag in tags):
            raise DatasetError(
                f"{where.describe()}: tags must be strings such as 'B-PER' or 'O', not numbers."
            )
        for tag in tags:
            _check_tag(tag, where)
        words = tuple(_token_text(t, where) for t in tokens)
        check_example_size(sum(map(len, words)) + len(words), where)
        examples.append(TokenExample(words, tuple(tags), where))
    return _token_dataset(examples, fmt, source)


def _token_text(token: object, where: Location) -> str:
    if isinstance(token, (list, dict)):
        raise DatasetError(
            f"{where.describe()}: each token must be a string, not a list or object."
        )
    return str(token)


def _check_tag(tag: str, where: Location) -> None:
    if not TAG_RE.match(tag):
        raise _not_a_tag(tag, where)


def _not_a_tag(tag: str, where: Location) -> DatasetError:
    return DatasetError(
        f"{where.describe()}: tag {tag!r} is not an IOB tag (O, B-TYPE or I-TYPE); each line "
        "needs the token first and its tag last."
    )


def _parse_conll(text: str, source: str, max_rows: int | None) -> ParsedDataset:
    examples: list[TokenExample] = []
    tokens: list[str] = []
    tags: list[str] = []
    chars = 0
    start: Location | None = None  # the line a sentence starts on

    def flush() -> None:
        nonlocal tokens, tags, chars
        if tokens:
            assert start is not None
            check_row_limit(len(examples) + 1, max_rows, start)
            examples.append(TokenExample(tuple(tokens), tuple(tags), start))
        tokens, tags, chars = [], [], 0

    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip() or line.startswith("-DOCSTART-"):
            flush()
            continue
        fields = line.split()
        if len(fields) < 2:
            raise DatasetError(
                f"{Location(source, line=number).describe()} has only one field "
                f"({fields[0]!r}); each line needs a token and its tag separated by a space or tab."
            )
        if not TAG_RE.match(fields[-1]):
            raise _not_a_tag(fields[-1], Location(source, line=number))
        if not tokens:
            start = Location(source, line=number)
        chars += len(fields[0]) + 1
        check_example_size(chars, Location(source, line=number))
        tokens.append(fields[0])
        tags.append(fields[-1])
    flush()
    return _token_dataset(examples, DataFormat.CONLL, source)


def _token_dataset(examples: list[TokenExample], fmt: DataFormat, source: str) -> ParsedDataset:
    check_count(examples, source)
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
