"""Hub datasets, with datasets.load_dataset replaced (models.training.datasets.hub)."""

from __future__ import annotations

from typing import Any

import pytest

from models.training.datasets import DataFormat, DatasetError, TrainTask, load_hub_dataset

CLS = TrainTask.TEXT_CLASSIFICATION
NER = TrainTask.TOKEN_CLASSIFICATION


def test_hub_dataset_class_labels_become_names(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER", "I-PER"])),
        }
    )
    table = datasets.Dataset.from_dict(
        {"tokens": [["Ann", "Lee", "ran"], ["ok"]], "ner_tags": [[1, 2, 0], [0]]}, features=features
    )
    calls: list[tuple[Any, ...]] = []

    def fake_load(name: str, config: str | None, split: str) -> datasets.Dataset:
        calls.append((name, config, split))
        return table

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    parsed = load_hub_dataset("conll2003", NER, config="conll2003", split="validation")
    assert calls == [("conll2003", "conll2003", "validation")]
    assert parsed.format is DataFormat.HUB
    assert parsed.examples[0].tags == ("B-PER", "I-PER", "O")
    assert parsed.source == "conll2003/conll2003 [validation]"


def test_hub_dataset_pairs_and_load_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    features = datasets.Features(
        {
            "sentence1": datasets.Value("string"),
            "sentence2": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["not_equivalent", "equivalent"]),
            "idx": datasets.Value("int32"),
        }
    )
    table = datasets.Dataset.from_dict(
        {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [0, 1], "idx": [0, 1]},
        features=features,
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: table)
    parsed = load_hub_dataset("glue", CLS, config="mrpc")
    assert parsed.labels == ("equivalent", "not_equivalent")
    assert parsed.examples[1].text_pair == "d" and parsed.examples[1].label == "equivalent"

    def offline(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("no internet")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(
        DatasetError, match=r"Couldn't load the hub dataset nope \[train\]: no internet"
    ):
        load_hub_dataset("nope", CLS)


def test_hub_rows_are_named_by_row_number(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    table = datasets.Dataset.from_dict({"text": ["a", "", "c"], "label": [0, 1, 0]})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: table)
    with pytest.raises(DatasetError, match=r"^imdb \[train\] row 2 has no text in column 'text'"):
        load_hub_dataset("imdb", CLS)
