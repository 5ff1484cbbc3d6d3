"""Files and bytes in: unusable files are refused with a sentence (models.training.datasets.files, .decoding)."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.training.datasets import DatasetError, TrainTask, parse_dataset

CLS = TrainTask.TEXT_CLASSIFICATION


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty"),
        (b"  \r\n\n", "is empty"),
        (b"PK\x03\x04rest-of-zip", "is a ZIP archive"),
        (b"\x89PNG\r\n\x1a\n", "is a PNG image"),
        (b"text,label\nab\x00cd,1\n", r"binary file \(a zero byte on line 2\)"),
        (b"text,label\nok,1\ncaf\xe9,0\n", r"not UTF-8 text: line 3 has an invalid byte \(0xe9\)"),
    ],
)
def test_unusable_files_are_refused_clearly(data: bytes, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        parse_dataset(data, CLS, filename="upload.csv")


def test_missing_path() -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        parse_dataset(Path("/nonexistent/file.tsv"), CLS)


def test_utf16_with_bom_is_accepted() -> None:
    data = "text\tlabel\r\nhello\t1\r\nbye\t0\r\n".encode("utf-16")
    assert [ex.text for ex in parse_dataset(data, CLS).examples] == ["hello", "bye"]


def test_a_file_of_control_characters_is_refused() -> None:
    # Used to be accepted as causal-LM text: only zero bytes counted as binary.
    data = b"title line\n" + bytes(range(1, 32)) * 10
    with pytest.raises(DatasetError, match=r"upload\.txt looks like a binary file"):
        parse_dataset(data, TrainTask.CAUSAL_LM, filename="upload.txt")
