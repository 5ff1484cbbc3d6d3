"""Validation data: check it against the training labels, or hold some training data out;
seeded samples of a dataset for quick runs."""

from __future__ import annotations

import random

from models.training.datasets.types import DatasetError, Location, ParsedDataset


def check_validation(train: ParsedDataset, validation: ParsedDataset) -> None:
    """Raise if the validation data uses labels (or tags) the training data never shows."""
    if train.task is not validation.task:
        raise DatasetError("The validation data is for a different task than the training data.")
    known = set(train.labels)
    for ex in validation.examples:
        for value in ex.label_values():
            if value not in known:
                noun = ex.LABEL_NOUN
                where = ex.where or Location(validation.source)
                raise DatasetError(
                    f"{where.describe()}: {noun} {value!r} does not occur in the training data "
                    f"({noun}s: {', '.join(train.labels)})."
                )


def split_holdout(
    dataset: ParsedDataset, fraction: float = 0.1, *, seed: int = 42, max_holdout: int = 2000
) -> tuple[ParsedDataset, ParsedDataset]:
    """Split off a seeded random validation part when no validation data was given."""
    n = len(dataset.examples)
    k = min(max_holdout, max(1, round(n * fraction)))
    if n - k < 1:
        raise DatasetError(
            f"{dataset.source} has only {n} examples: too few to hold some out for validation; "
            "give validation data too."
        )
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = set(order[:k])
    train = [ex for i, ex in enumerate(dataset.examples) if i not in held]
    val = [ex for i, ex in enumerate(dataset.examples) if i in held]
    return (
        dataset.subset(train),
        dataset.subset(val, source=f"{dataset.source} (held out {k})"),
    )


def sample_examples(dataset: ParsedDataset, limit: int, *, seed: int = 42) -> ParsedDataset:
    """At most ``limit`` examples, chosen at random with ``seed`` (order kept)."""
    if limit <= 0 or len(dataset.examples) <= limit:
        return dataset
    picked = sorted(random.Random(seed).sample(range(len(dataset.examples)), limit))
    return dataset.subset([dataset.examples[i] for i in picked])
