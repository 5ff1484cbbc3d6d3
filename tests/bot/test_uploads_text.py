from __future__ import annotations

import aiohttp
import pytest

from bot.text import clip, quote, sentence_around
from bot.uploads import UploadError, decode_upload, fetch_attachment


def test_decode_accepts_bom_and_crlf() -> None:
    assert (
        decode_upload("\ufeffline one\r\nline two\r\n".encode(), "a.txt") == "line one\nline two\n"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty"),
        (b"   \n\n", "is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        (b"caf\xe9 au lait\nsecond line", "not UTF-8"),
        (bytes(range(1, 32)) * 10, "binary"),
    ],
)
def test_decode_refuses_bad_files(data: bytes, message: str) -> None:
    with pytest.raises(UploadError, match=message):
        decode_upload(data, "notes.txt")


def test_decode_names_the_line_of_bad_bytes() -> None:
    with pytest.raises(UploadError, match="line 3"):
        decode_upload(b"ok\nok\nbad \xff byte", "notes.txt")


def test_sentence_around_finds_the_answer_sentence() -> None:
    text = "The tower is in Paris. It was finished in 1889! Was it? Yes.\n\nA new paragraph"
    at = text.index("1889")
    assert sentence_around(text, at, at + 4) == "It was finished in 1889!"
    at = text.index("paragraph")
    assert sentence_around(text, at, at + 9) == "A new paragraph"
    long = "word " * 400
    assert len(sentence_around(long, 1000, 1004)) < 620


def test_quote_and_clip() -> None:
    assert quote("a\n\nb") == "> a\n>\n> b"
    assert clip("abcdef", 4) == "abc…" and clip("abc", 4) == "abc"


class _Attachment:
    """What fetch_attachment reads of a discord.Attachment."""

    def __init__(self, filename: str, size: int) -> None:
        self.filename, self.size = filename, size

    async def read(self) -> bytes:
        return b"x" * self.size


async def test_a_file_just_over_the_limit_says_so_in_bytes() -> None:
    with pytest.raises(UploadError) as caught:
        await fetch_attachment(_Attachment("big.txt", 1_000_001), max_bytes=1_000_000)  # type: ignore[arg-type]
    assert str(caught.value) == "`big.txt` is 1,000,001 bytes; the limit is 1,000,000 bytes."
    with pytest.raises(UploadError, match=r"is 2\.0 MB; the limit is 1\.0 MB"):
        await fetch_attachment(_Attachment("big.txt", 2_000_000), max_bytes=1_000_000)  # type: ignore[arg-type]


class _DroppedAttachment(_Attachment):
    def __init__(self, filename: str, size: int, error: BaseException) -> None:
        super().__init__(filename, size)
        self.error = error

    async def read(self) -> bytes:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientPayloadError("Response payload is not completed"),
        TimeoutError(),
    ],
)
async def test_a_download_that_drops_asks_for_the_file_again(error: BaseException) -> None:
    """The CDN connection dropping or stalling is the user's sentence, not an error id."""
    attachment = _DroppedAttachment("data.csv", 100, error)
    with pytest.raises(UploadError, match=r"couldn't download `data\.csv`.*uploading it again"):
        await fetch_attachment(attachment, max_bytes=1_000)  # type: ignore[arg-type]
