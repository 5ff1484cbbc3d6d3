"""Bytes to text for anything a user uploads: UTF-8 or UTF-16 with a BOM, ``\\n`` line ends.

Binary files are refused with a sentence that says what they are (a ZIP archive, a PNG
image...) or on which line the first zero byte is; text in another encoding is refused with
the line of the first bad byte. This module depends on nothing else in the project, so any
caller (the dataset parser, the bot's attachment reader) can use it and phrase the advice.
"""

from __future__ import annotations

import itertools
import re

__all__ = ["TextDecodeError", "decode_text"]


class TextDecodeError(ValueError):
    """Bytes that are not usable text; ``str()`` is a sentence for the user."""


_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"SQLite format 3", "an SQLite database"),
    (b"\x7fELF", "a program"),
    (b"PAR1", "a Parquet file"),
)
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# Control characters other than tab, line feed and form feed (CR is gone by the time we look).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0d-\x1f]")


def decode_text(data: bytes, name: str, *, wanted: str = "a UTF-8 text file") -> str:
    """``data`` as text with ``\\n`` line ends, or :class:`TextDecodeError`.

    ``name`` names the file at the start of each sentence ("reviews.csv", "`notes.txt`");
    ``wanted`` is what to upload instead of a binary file ("a .txt or .md file").
    """
    if not data.strip():
        raise TextDecodeError(f"{name} is empty.")
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise TextDecodeError(f"{name} is {what} (a binary file), not text; upload {wanted}.")
    if data.startswith(_UTF16_BOMS):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise TextDecodeError(
                f"{name} starts like UTF-16 text but does not decode; save it as UTF-8 and "
                "try again."
            ) from None
    else:
        nul = data.find(b"\x00")
        if nul >= 0:
            line = data.count(b"\n", 0, nul) + 1
            raise TextDecodeError(
                f"{name} looks like a binary file (a zero byte on line {line}); upload {wanted}."
            )
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise TextDecodeError(
                f"{name} is not UTF-8 text: line {line} has an invalid byte "
                f"(0x{data[exc.start]:02x}); save the file as UTF-8 and try again."
            ) from None
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise TextDecodeError(f"{name} is empty.")
    _refuse_control_characters(text, name, wanted)
    return text


def _refuse_control_characters(text: str, name: str, wanted: str) -> None:
    """Text that is more than 1% control characters (at least 9) is a binary file in disguise."""
    limit = max(8, len(text) // 100)
    found = _CONTROL.finditer(text)
    first = next(found, None)
    if first is None or 1 + sum(1 for _ in itertools.islice(found, limit)) <= limit:
        return
    line = text.count("\n", 0, first.start()) + 1
    raise TextDecodeError(
        f"{name} looks like a binary file (control characters from line {line}); upload {wanted}."
    )
