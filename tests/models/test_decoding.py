"""decode_text on its own: the one decoder for uploaded text (models.decoding)."""

from __future__ import annotations

import pytest

from models.decoding import TextDecodeError
from models.training.datasets import DatasetError, decode_text


def test_bom_and_crlf_are_normalised() -> None:
    assert decode_text("\ufeffline one\r\nline two\rthree\r\n".encode(), "a.txt") == (
        "line one\nline two\nthree\n"
    )


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_needs_its_bom(encoding: str) -> None:
    data = "\ufeffcafé\r\nau lait\r\n".encode(encoding)
    assert decode_text(data, "a.txt") == "café\nau lait\n"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xef\xbb\xbf \r\n", r"^`n\.txt` is empty\.$"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r"`n\.txt` is a PNG image \(a binary file\)"),
        (b"ok\nok\nab\x00cd", r"binary file \(a zero byte on line 3\)"),
        (b"ok\nok\nbad \xff byte", r"not UTF-8 text: line 3 has an invalid byte \(0xff\)"),
        (b"\xff\xfe\x00\xd8", r"starts like UTF-16 text but does not decode"),
    ],
)
def test_unusable_bytes_are_named(data: bytes, message: str) -> None:
    with pytest.raises(TextDecodeError, match=message):
        decode_text(data, "`n.txt`")


def test_mostly_control_characters_is_a_binary_file() -> None:
    data = b"a fine first line\n" + bytes(range(1, 32)) * 10
    with pytest.raises(TextDecodeError, match=r"binary file \(control characters from line 2\)"):
        decode_text(data, "n.txt")
    # A few stray control characters in real text are kept.
    text = (b"tab\tform\x0cfeed " + b"word " * 40 + b"\x1b[0m colour\n") * 20
    assert decode_text(text, "n.txt").count("\x1b") == 20


def test_the_advice_names_what_to_upload() -> None:
    with pytest.raises(TextDecodeError, match=r"upload a \.txt or \.md file\.$"):
        decode_text(b"PK\x03\x04zip", "`n.zip`", wanted="a .txt or .md file")


def test_decode_errors_are_not_dataset_errors() -> None:
    # Callers outside the datasets (the bot's attachment reader) catch TextDecodeError alone.
    assert issubclass(TextDecodeError, ValueError)
    assert not issubclass(TextDecodeError, DatasetError)
