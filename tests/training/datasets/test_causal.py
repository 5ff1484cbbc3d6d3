"""Causal LM data: paragraphs of plain text (models.training.datasets.causal)."""

from __future__ import annotations

from models.training.datasets import TrainTask, parse_dataset

CLM = TrainTask.CAUSAL_LM


def test_causal_text_splits_paragraphs() -> None:
    parsed = parse_dataset(b"First para\r\nstill first.\r\n\r\nSecond one.\r\n", CLM)
    assert [ex.text for ex in parsed.examples] == ["First para\nstill first.", "Second one."]
    assert [ex.line for ex in parsed.examples] == [1, 4]
