"""Validation checks, hold-out and samples (models.training.datasets.splits)."""

from __future__ import annotations

import pytest

from models.training.datasets import (
    DatasetError,
    TrainTask,
    check_validation,
    parse_dataset,
    sample_examples,
    split_holdout,
)

CLS = TrainTask.TEXT_CLASSIFICATION


def test_validation_label_unknown_to_training() -> None:
    train = parse_dataset(b"text\tlabel\na\tx\nb\ty\n", CLS, filename="train.tsv")
    val = parse_dataset(b"text\tlabel\na\tx\nb\tz\n", CLS, filename="dev.tsv")
    with pytest.raises(DatasetError, match=r"dev\.tsv line 3: label 'z' does not occur"):
        check_validation(train, val)


def test_holdout_and_sampling_are_seeded() -> None:
    rows = "".join(f"t{i}\t{i % 2}\n" for i in range(100))
    parsed = parse_dataset(("text\tlabel\n" + rows).encode(), CLS)
    train, val = split_holdout(parsed, 0.1, seed=1)
    assert len(train) == 90 and len(val) == 10
    assert {ex.text for ex in train.examples}.isdisjoint(ex.text for ex in val.examples)
    assert split_holdout(parsed, 0.1, seed=1)[1].examples == val.examples
    sample = sample_examples(parsed, 7, seed=3)
    assert len(sample) == 7 and sample.labels == parsed.labels
    assert sample.examples == sample_examples(parsed, 7, seed=3).examples


def test_validation_errors_name_the_record_or_row() -> None:
    train = parse_dataset(b"text\tlabel\na\tx\nb\ty\n", CLS, filename="train.tsv")
    records = parse_dataset(
        b'[{"text": "a", "label": "x"}, {"text": "b", "label": "z"}]', CLS, filename="dev.json"
    )
    with pytest.raises(DatasetError, match=r"^dev\.json record 2: label 'z' does not occur"):
        check_validation(train, records)
