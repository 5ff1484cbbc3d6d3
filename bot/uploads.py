"""Reading attachments safely: size-capped before download, parsed off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from pathlib import PurePath
from typing import TypeVar

import discord

from bot.errors import UserFacingError

T = TypeVar("T")

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown"})


class UploadError(UserFacingError):
    """An attachment was refused; the message says why and what to do."""


def _size(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f} MB"
    if n >= 1_000:
        return f"{n / 1_000:.0f} KB"
    return f"{n} bytes"


async def fetch_attachment(
    attachment: discord.Attachment, *, max_bytes: int, suffixes: Collection[str] | None = None
) -> bytes:
    """The attachment's bytes, refused before download when too big or of the wrong kind."""
    name = attachment.filename
    suffix = PurePath(name).suffix.lower()
    if suffixes is not None and suffix not in suffixes:
        kinds = " or ".join(sorted(suffixes))
        raise UploadError(f"Upload a {kinds} file; `{name}` is not one.")
    if attachment.size > max_bytes:
        raise UploadError(f"`{name}` is {_size(attachment.size)}; the limit is {_size(max_bytes)}.")
    if attachment.size == 0:
        raise UploadError(f"`{name}` is empty.")
    try:
        data = await attachment.read()
    except discord.HTTPException as exc:
        raise UploadError(
            f"I couldn't download `{name}` from Discord; try uploading it again."
        ) from exc
    if len(data) > max_bytes:  # the declared size lied
        raise UploadError(f"`{name}` is larger than the limit of {_size(max_bytes)}.")
    return data


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 text (BOM and CRLF allowed) or an `UploadError` naming what is wrong."""
    if not data.strip():
        raise UploadError(f"`{name}` is empty.")
    if b"\x00" in data:
        raise UploadError(
            f"`{name}` looks like a binary file, not text. Upload a .txt or .md file."
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UploadError(
            f"`{name}` is not UTF-8 text (line {line}). Save it as UTF-8 and upload it again."
        ) from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    control = sum(1 for ch in text if ord(ch) < 32 and ch not in "\n\t\f")
    if control > max(8, len(text) // 100):
        raise UploadError(
            f"`{name}` looks like a binary file, not text. Upload a .txt or .md file."
        )
    return text


async def read_text_attachment(attachment: discord.Attachment, *, max_bytes: int) -> str:
    """A .txt/.md attachment as text, downloaded within the size cap and decoded off the loop."""
    data = await fetch_attachment(attachment, max_bytes=max_bytes, suffixes=TEXT_SUFFIXES)
    return await asyncio.to_thread(decode_text, data, attachment.filename)
