"""Token classification data: CoNLL and JSONL tokens/tags (models.training.datasets.tokens)."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.training.datasets import (
    DataFormat,
    DatasetError,
    TrainTask,
    detect_format,
    parse_dataset,
)

NER = TrainTask.TOKEN_CLASSIFICATION


def test_conll_train_parses_sentences_and_tags(shared_data: Path) -> None:
    parsed = parse_dataset(shared_data / "conll2003" / "train.txt", NER)
    assert parsed.format is DataFormat.CONLL
    assert len(parsed) == 14_041
    assert parsed.labels[0] == "O"
    assert set(parsed.labels) == {
        "O",
        *(f"{p}-{t}" for p in "BI" for t in ("PER", "ORG", "LOC", "MISC")),
    }
    first = parsed.examples[0]
    assert first.tokens[:3] == ("EU", "rejects", "German")
    assert first.tags[:3] == ("B-ORG", "O", "B-MISC")
    assert first.line == 3


def test_conll_as_txt_with_docstart_crlf_and_tabs() -> None:
    data = (
        b"-DOCSTART- -X- -X- O\r\n\r\nEU NNP B-NP B-ORG\r\nrejects VBZ B-VP O\r\n\r\n"
        b"Peter\tB-PER\r\nBlackburn\tI-PER\r\n"
    )
    assert detect_format(data.decode()) is DataFormat.CONLL
    parsed = parse_dataset(data, NER, filename="ner.txt")
    assert [ex.tokens for ex in parsed.examples] == [("EU", "rejects"), ("Peter", "Blackburn")]
    assert [ex.line for ex in parsed.examples] == [3, 6]
    assert parsed.labels == ("O", "B-ORG", "B-PER", "I-PER")


def test_conll_bad_tag_names_the_line() -> None:
    data = b"EU B-ORG\nrejects O\n\nPeter B-PER\nBlackburn PERSON\nsays O\n"
    with pytest.raises(DatasetError, match=r"ner\.txt line 5: tag 'PERSON' is not an IOB tag"):
        parse_dataset(data, NER, filename="ner.txt")


def test_conll_line_without_tag_names_the_line() -> None:
    data = b"EU B-ORG\nrejects O\n\nPeter B-PER\nBlackburn\n"
    with pytest.raises(DatasetError, match=r"line 5 has only one field"):
        parse_dataset(data, NER, filename="ner.txt")


def test_ner_jsonl_and_length_mismatch() -> None:
    good = b'{"tokens": ["Paris", "is"], "tags": ["B-LOC", "O"]}\n{"tokens": ["Bob"], "tags": ["B-PER"]}\n'
    parsed = parse_dataset(good, NER)
    assert parsed.format is DataFormat.JSONL
    assert parsed.labels == ("O", "B-LOC", "B-PER")
    bad = good + b'{"tokens": ["a", "b"], "tags": ["O"]}\n'
    with pytest.raises(DatasetError, match=r"line 3 has 2 tokens but 1 tags"):
        parse_dataset(bad, NER, filename="n.jsonl")
