"""Question answering data: SQuAD JSON and answer offsets (models.training.datasets.qa)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.training.datasets import DataFormat, DatasetError, TrainTask, parse_dataset

QA = TrainTask.QUESTION_ANSWERING


def test_squad_json_parses_questions(shared_data: Path) -> None:
    parsed = parse_dataset(shared_data / "squad" / "dev-v1.1-part-a.json", QA)
    assert parsed.format is DataFormat.SQUAD
    assert len(parsed) == 5_696
    ex = parsed.examples[0]
    answer = ex.answers[0]
    assert ex.context[answer.start : answer.start + len(answer.text)] == answer.text


def _squad(answer_start: int) -> bytes:
    return json.dumps(
        {
            "data": [
                {
                    "title": "t",
                    "paragraphs": [
                        {
                            "context": "Paris is the capital of France.",
                            "qas": [
                                {
                                    "id": "q1",
                                    "question": "What is the capital of France?",
                                    "answers": [{"text": "Paris", "answer_start": 0}],
                                },
                                {
                                    "id": "q2",
                                    "question": "Capital of what?",
                                    "answers": [{"text": "France", "answer_start": answer_start}],
                                },
                            ],
                        }
                    ],
                }
            ]
        }
    ).encode()


def test_squad_answer_offsets_are_checked() -> None:
    assert len(parse_dataset(_squad(24), QA)) == 2
    with pytest.raises(
        DatasetError, match=r"question 'q2': the answer 'France' is not at answer_start 3"
    ):
        parse_dataset(_squad(3), QA)


def test_qa_refuses_a_table() -> None:
    with pytest.raises(DatasetError, match="needs SQuAD JSON"):
        parse_dataset(b"text,label\na,1\n", QA)


def test_squad_question_without_id_is_named_by_its_place() -> None:
    data = json.loads(_squad(3))
    del data["data"][0]["paragraphs"][0]["qas"][1]["id"]
    with pytest.raises(
        DatasetError, match=r"article 1 paragraph 1 question 2: the answer 'France' is not at"
    ):
        parse_dataset(json.dumps(data).encode(), QA, filename="dev.json")
