"""The dataset summary (models.training.datasets.types)."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.training.datasets import Location, TrainTask, parse_dataset

CLS = TrainTask.TEXT_CLASSIFICATION


def test_summary_describes_counts_labels_and_samples(shared_data: Path) -> None:
    summary = parse_dataset(shared_data / "sst2" / "dev.tsv", CLS).summary(n_samples=2)
    assert summary.num_examples == 872
    assert summary.label_counts == (("0", 428), ("1", 444))
    assert len(summary.samples) == 2
    text = summary.describe()
    assert "872 examples" in text and "0 (428)" in text and "e.g. [0]" in text
    with pytest.raises(AttributeError):
        summary.num_examples = 1  # type: ignore[misc]  # frozen


@pytest.mark.parametrize(
    ("location", "described", "number"),
    [
        (Location("moods.csv", line=4), "moods.csv line 4", 4),
        (Location("rows.json", record=3), "rows.json record 3", 3),
        (Location("glue/mrpc [train]", row=7), "glue/mrpc [train] row 7", 7),
        (Location("dev.json", question_id="q2"), "dev.json question 'q2'", 0),
        (
            Location("dev.json", squad_position=(1, 2, 3)),
            "dev.json article 1 paragraph 2 question 3",
            0,
        ),
        (Location("d.tsv"), "d.tsv", 0),
    ],
)
def test_location_describes_itself(location: Location, described: str, number: int) -> None:
    assert location.describe() == described
    assert location.number == number


def test_examples_keep_their_location() -> None:
    parsed = parse_dataset(b'[{"text": "a", "label": 1}, {"text": "b", "label": 0}]', CLS)
    assert [ex.where for ex in parsed.examples] == [
        Location("the uploaded file", record=1),
        Location("the uploaded file", record=2),
    ]
    assert [ex.line for ex in parsed.examples] == [1, 2]
