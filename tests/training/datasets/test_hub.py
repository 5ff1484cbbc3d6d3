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
    # The library's message may hold local paths (cache folders): only a sentence is shown.
    with pytest.raises(
        DatasetError, match=r"^Couldn't load the hub dataset nope \[train\]; check its name"
    ):
        load_hub_dataset("nope", CLS)


def test_hub_rows_are_named_by_row_number(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    table = datasets.Dataset.from_dict({"text": ["a", "", "c"], "label": [0, 1, 0]})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: table)
    with pytest.raises(DatasetError, match=r"^imdb \[train\] row 2 has no text in column 'text'"):
        load_hub_dataset("imdb", CLS)


# --------------------------------------------------------------------------- issue 10: bounded
# and confined. "Online" tests switch the offline flags off and replace the hub's answers.

SST2_CARD = {
    "id": "stanfordnlp/sst2",
    "sha": "8d51e7e4887a4caaa95b3fbebbf53c0490b58bbb",
    "cardData": {
        "dataset_info": [
            {
                "config_name": "default",
                "features": [{"name": "sentence", "dtype": "string"}],
                "splits": [
                    {"name": "train", "num_bytes": 4681603, "num_examples": 67349},
                    {"name": "validation", "num_bytes": 106252, "num_examples": 872},
                ],
                "download_size": 3331058,
                "dataset_size": 4859637,
            }
        ]
    },
}


def _online(monkeypatch: pytest.MonkeyPatch, card: dict[str, Any] | None = SST2_CARD) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import DatasetInfo

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)

    def dataset_info(self: Any, repo_id: str, **kwargs: Any) -> DatasetInfo:
        if card is None:
            raise ConnectionError("the hub is unreachable")
        return DatasetInfo(**card)

    monkeypatch.setattr(HfApi, "dataset_info", dataset_info)


def test_split_sizes_come_from_the_dataset_card() -> None:
    from huggingface_hub.hf_api import DatasetInfo

    from models.training.datasets.hub import SplitSize, split_size_from_card

    card = DatasetInfo(**SST2_CARD).card_data
    assert card is not None
    as_dict = card.to_dict()
    assert split_size_from_card(as_dict, None, "train") == SplitSize(67349, 4681603)
    assert split_size_from_card(as_dict, "default", "validation") == SplitSize(872, 106252)
    assert split_size_from_card(as_dict, "other", "train") is None
    assert split_size_from_card(as_dict, None, "test") is None
    single = {"dataset_info": {"splits": [{"name": "train", "num_examples": 5}]}}
    assert split_size_from_card(single, None, "train") == SplitSize(5, None)
    assert split_size_from_card({}, None, "train") is None


def test_a_split_over_the_limits_is_refused_before_anything_downloads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import datasets

    from models.training.datasets import DataLimits

    _online(monkeypatch)
    loads: list[Any] = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: loads.append(a))
    with pytest.raises(
        DatasetError, match=r"^stanfordnlp/sst2 \[train\] has 67,349 rows; .* 1,000"
    ):
        load_hub_dataset("stanfordnlp/sst2", CLS, limits=DataLimits(max_rows=1000))
    with pytest.raises(DatasetError, match=r"is 5 MB; this bot reads at most 1 MB from one split"):
        load_hub_dataset("stanfordnlp/sst2", CLS, limits=DataLimits(max_bytes=1_000_000))
    assert loads == []


def test_without_metadata_rows_are_streamed_and_the_read_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import datasets

    from models.training.datasets import DataLimits

    _online(monkeypatch, card=None)
    taken: list[int] = []

    def endless() -> Any:
        i = 0
        while True:
            taken.append(i)
            yield {"text": f"row {i}", "label": i % 2}
            i += 1

    class Streamed:
        features = None

        def __iter__(self) -> Any:
            return endless()

    calls: list[dict[str, Any]] = []

    def fake_load(name: str, config: str | None, **kwargs: Any) -> Streamed:
        calls.append(kwargs)
        return Streamed()

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    with pytest.raises(DatasetError, match=r"^big \[train\] row 51 goes past the limit of 50"):
        load_hub_dataset("big", CLS, limits=DataLimits(max_rows=50))
    assert calls == [{"split": "train", "streaming": True}]
    assert len(taken) == 51  # never more than the limit and one


def test_names_that_would_read_this_machine_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """A valid-looking id that names a folder in the working directory is not loaded from it
    (datasets.load_dataset would), nor is a builder of local files."""
    import datasets

    monkeypatch.chdir(tmp_path)
    (tmp_path / "moods").mkdir()
    (tmp_path / "moods" / "train.csv").write_text("text,label\nsecret host row,a\n")
    (tmp_path / "owner").mkdir()
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("loaded"))
    for name, refusal in (
        ("moods", "would be read from this machine"),
        ("owner/anything", "would be read from this machine"),
        ("csv", "is a file format"),
        ("imagefolder", "is a file format"),
        ("/etc", "not a Hugging Face hub dataset id"),
        ("hf://datasets/x/y", "not a Hugging Face hub dataset id"),
    ):
        with pytest.raises(DatasetError, match=refusal):
            load_hub_dataset(name, CLS)
