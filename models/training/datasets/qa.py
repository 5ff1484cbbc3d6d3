"""Extractive question answering data: SQuAD JSON, or JSON rows with question, context and
answers (each answer's text must sit at its ``answer_start`` in the context)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from models.training.datasets.rows import parse_json, read_rows
from models.training.datasets.types import (
    Answer,
    ColumnSpec,
    DataFormat,
    DatasetError,
    Location,
    ParsedDataset,
    QAExample,
    Row,
    TrainTask,
    check_count,
    check_example_size,
    check_row_limit,
)


def parse_qa(
    text: str, fmt: DataFormat, source: str, columns: ColumnSpec, *, max_rows: int | None = None
) -> ParsedDataset:
    """A QA dataset from a file's decoded text (``columns`` is not used)."""
    if fmt is DataFormat.SQUAD:
        return _parse_squad(text, source, max_rows)
    if fmt in (DataFormat.JSONL, DataFormat.JSON_RECORDS):
        header, rows = read_rows(text, fmt, source, max_rows=max_rows)
        return qa_from_rows(rows, header, fmt, source, columns)
    raise DatasetError(
        f"{source} looks like {fmt.describe()}; question answering needs SQuAD JSON "
        "(data → paragraphs → qas with answers and answer_start) or JSONL with question, context "
        "and answers."
    )


def qa_from_rows(
    rows: Sequence[Row], header: Sequence[str], fmt: DataFormat, source: str, columns: ColumnSpec
) -> ParsedDataset:
    """A QA dataset from rows of question, context and answers; unanswerable ones are skipped."""
    examples: list[QAExample] = []
    skipped = 0
    for i, (where, row) in enumerate(rows, start=1):
        question, context = row.get("question"), row.get("context")
        if not isinstance(question, str) or not question.strip():
            raise DatasetError(f"{where.describe()} has no question text.")
        if not isinstance(context, str) or not context.strip():
            raise DatasetError(f"{where.describe()} has no context text.")
        check_example_size(len(question) + len(context), where)
        answers = [] if row.get("is_impossible") else _answers_of(row, where)
        if not answers:
            skipped += 1  # SQuAD 2.0 unanswerable questions: extractive training needs an answer
            continue
        for answer in answers:
            if context[answer.start : answer.start + len(answer.text)] != answer.text:
                raise DatasetError(
                    f"{where.describe()}: the answer {answer.text!r} is not at answer_start "
                    f"{answer.start} of its context."
                )
        ident = str(row.get("id") or i)
        examples.append(QAExample(ident, question.strip(), context, tuple(answers), where))
    check_count(examples, source)
    warnings = (
        (f"{skipped} unanswerable question(s) skipped: extractive QA trains on answered ones.",)
        if skipped
        else ()
    )
    return ParsedDataset(
        TrainTask.QUESTION_ANSWERING, fmt, source, tuple(examples), (), (), warnings
    )


def _parse_squad(text: str, source: str, max_rows: int | None) -> ParsedDataset:
    obj = parse_json(text, source)
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
                where = Location(
                    source,
                    question_id=str(ident) if ident else None,
                    squad_position=None if ident else (a, p, q),
                )
                check_row_limit(len(rows) + 1, max_rows, where)
                rows.append((where, row))
    return qa_from_rows(rows, [], DataFormat.SQUAD, source, ColumnSpec())


def _answers_of(row: Mapping[str, Any], where: Location) -> list[Answer]:
    answers = row.get("answers")
    if isinstance(answers, dict):  # the hub layout: {"text": [...], "answer_start": [...]}
        texts, starts = answers.get("text") or [], answers.get("answer_start") or []
        if len(texts) != len(starts):
            raise DatasetError(
                f"{where.describe()}: answers.text and answers.answer_start differ in length."
            )
        pairs = list(zip(texts, starts, strict=True))
    elif isinstance(answers, list):
        pairs = []
        for answer in answers:
            if not isinstance(answer, dict) or "text" not in answer or "answer_start" not in answer:
                raise DatasetError(
                    f"{where.describe()}: each answer needs 'text' and 'answer_start'."
                )
            pairs.append((answer["text"], answer["answer_start"]))
    elif "answer" in row and "answer_start" in row:
        pairs = [(row["answer"], row["answer_start"])]
    else:
        raise DatasetError(
            f"{where.describe()} has no answers (expected 'answers' with 'text' and "
            "'answer_start')."
        )
    result: list[Answer] = []
    for text, start in pairs:
        if not isinstance(text, str) or not text.strip():
            raise DatasetError(f"{where.describe()} has an empty answer text.")
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise DatasetError(
                f"{where.describe()}: answer_start {start!r} is not a character offset."
            )
        result.append(Answer(text, start))
    return result
