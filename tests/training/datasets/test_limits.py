"""Bounded, malformed and hostile data files: every refusal is a sentence naming its line
(issue 10, item 3: row caps, huge rows, deep nesting, truncation, encodings, binaries)."""

from __future__ import annotations

import json

import pytest

from models.training.datasets import (
    MAX_EXAMPLE_CHARS,
    DatasetError,
    TrainTask,
    parse_dataset,
)

CLS = TrainTask.TEXT_CLASSIFICATION
NER = TrainTask.TOKEN_CLASSIFICATION
QA = TrainTask.QUESTION_ANSWERING
LM = TrainTask.CAUSAL_LM


def _squad(questions: int) -> str:
    qas = [
        {"id": f"q{i}", "question": "Who?", "answers": [{"text": "Ann", "answer_start": 0}]}
        for i in range(questions)
    ]
    return json.dumps({"data": [{"paragraphs": [{"context": "Ann ran.", "qas": qas}]}]})


@pytest.mark.parametrize(
    ("task", "text", "past"),
    [
        (CLS, "text,label\n" + "a,x\nb,y\n" * 3, "data.txt line 5 goes past the limit of 3"),
        (CLS, "text\tlabel\n" + "a\tx\nb\ty\n" * 3, "data.txt line 5 goes past the limit of 3"),
        (CLS, "x\t1\ny\t0\n" * 3, "data.txt line 4 goes past the limit of 3"),  # no header
        (CLS, '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n' * 3, "data.txt line 4 "),
        (
            CLS,
            json.dumps([{"text": "a", "label": "x"}, {"text": "b", "label": "y"}] * 3),
            "data.txt record 4 goes past",
        ),
        (NER, "Ann B-PER\nran O\n\n" * 6, "data.txt line 10 goes past the limit of 3"),
        (QA, _squad(6), "data.txt question 'q3' goes past the limit of 3"),
        (LM, "one paragraph\n\n" * 6, "data.txt line 7 goes past the limit of 3"),
        (LM, "line\n" * 6, "data.txt line 4 goes past the limit of 3"),
    ],
)
def test_more_rows_than_allowed_stop_the_parser_with_the_line(
    task: TrainTask, text: str, past: str
) -> None:
    with pytest.raises(DatasetError, match=f"^{past}"):
        parse_dataset(text.encode(), task, filename="data.txt", max_rows=3)
    parse_dataset(text.encode(), task, filename="data.txt", max_rows=100)  # fine under the cap


def test_a_huge_row_is_refused_with_its_line() -> None:
    huge = "x" * (MAX_EXAMPLE_CHARS + 1)
    rows = f'{{"text": "ok", "label": "a"}}\n{{"text": "{huge}", "label": "b"}}\n'
    with pytest.raises(DatasetError, match=r"^rows\.jsonl line 2 is 100,001 characters long"):
        parse_dataset(rows.encode(), CLS, filename="rows.jsonl")
    text = "short line\n\n" + ("word " * 30_000) + "\n"
    with pytest.raises(DatasetError, match=r"^book\.txt line 3 is 1\d\d,\d{3} characters long"):
        parse_dataset(text.encode(), LM, filename="book.txt")
    csv = "text,label\nok,a\n" + "y" * 200_000 + ",b\n"
    with pytest.raises(DatasetError, match=r"^big\.csv line 3 is not valid CSV: field larger"):
        parse_dataset(csv.encode(), CLS, filename="big.csv")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 5000 + "]" * 5000, r"^deep\.json line 1 nests JSON more than 100 levels deep"),
        ("[\n" + "[" * 5000 + "]" * 5000 + "\n]", r"^deep\.json line 2 nests JSON more than 100"),
        (
            '{"text": "a", "label": "x"}\n{"text": ' + "[" * 5000 + "]" * 5000 + "}\n",
            r"^deep\.json line 2 nests JSON more than 100 levels deep",
        ),
        (
            '{"data": [\n{"paragraphs": ' + "[" * 5000 + "]" * 5000 + "}]}",
            r"^deep\.json line 2 nests JSON more than 100 levels deep",
        ),
    ],
)
def test_json_nested_too_deep_is_a_sentence_with_its_line(text: str, message: str) -> None:
    for task in (CLS, QA):
        with pytest.raises(DatasetError, match=message):
            parse_dataset(text.encode(), task, filename="deep.json")


def test_a_truncated_json_document_names_the_line_where_it_breaks() -> None:
    whole = json.dumps(json.loads(_squad(3)), indent=2)
    cut = whole[: len(whole) // 2]
    line = cut.count("\n") + 1
    with pytest.raises(DatasetError, match=rf"^squad\.json line {line} is not valid JSON"):
        parse_dataset(cut.encode(), QA, filename="squad.json")


def test_truncated_csv_and_utf8_name_their_line() -> None:
    with pytest.raises(DatasetError, match=r"^cut\.csv line 3 is not valid CSV"):
        parse_dataset(b'text,label\nok,a\n"never closed,b\n', CLS, filename="cut.csv")
    cut = "text,label\nok,a\ncafé,b\n".encode()[:-4]  # the é cut in half
    with pytest.raises(DatasetError, match=r"^cut\.csv is not UTF-8 text: line 3"):
        parse_dataset(cut, CLS, filename="cut.csv")


def test_utf16_without_a_bom_and_binaries_are_sentences_with_a_line() -> None:
    utf16 = "text,label\nok,a\nno,b\n".encode("utf-16-le")
    with pytest.raises(DatasetError, match=r"^u16\.csv looks like a binary file \(a zero byte"):
        parse_dataset(utf16, CLS, filename="u16.csv")
    with pytest.raises(DatasetError, match=r"^model\.bin is a ZIP archive"):
        parse_dataset(b"PK\x03\x04" + bytes(100), CLS, filename="model.bin")


def test_a_missing_file_is_named_by_its_display_name_never_its_path() -> None:
    with pytest.raises(DatasetError) as caught:
        parse_dataset(Path_("/srv/hfcord/data/jobs/7/train.data"), CLS, filename="moods.csv")
    assert str(caught.value) == "The file 'moods.csv' does not exist."


def Path_(value: str) -> object:
    from pathlib import Path

    return Path(value)
