"""Reading attachments safely: size-capped before download, parsed off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from pathlib import PurePath

import aiohttp
import discord

from bot.errors import UserFacingError
from models.decoding import TextDecodeError, decode_text

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
        size, limit = _size(attachment.size), _size(max_bytes)
        if size == limit:  # just over the limit: rounding would make them read the same
            size, limit = f"{attachment.size:,} bytes", f"{max_bytes:,} bytes"
        raise UploadError(f"`{name}` is {size}; the limit is {limit}.")
    if attachment.size == 0:
        raise UploadError(f"`{name}` is empty.")
    try:
        data = await attachment.read()
    except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
        # Discord's answer, or the connection to its CDN dropping or stalling: ask again.
        raise UploadError(
            f"I couldn't download `{name}` from Discord; try uploading it again."
        ) from exc
    if len(data) > max_bytes:  # the declared size lied
        raise UploadError(f"`{name}` is larger than the limit of {_size(max_bytes)}.")
    return data


def decode_upload(data: bytes, name: str) -> str:
    """A .txt/.md upload as text (UTF-8 or UTF-16 with a BOM; CRLF allowed), or an `UploadError`
    naming what is wrong and on which line."""
    try:
        return decode_text(data, f"`{name}`", wanted="a .txt or .md file (UTF-8)")
    except TextDecodeError as exc:
        raise UploadError(str(exc)) from None


async def read_text_attachment(attachment: discord.Attachment, *, max_bytes: int) -> str:
    """A .txt/.md attachment as text, downloaded within the size cap and decoded off the loop."""
    data = await fetch_attachment(attachment, max_bytes=max_bytes, suffixes=TEXT_SUFFIXES)
    return await asyncio.to_thread(decode_upload, data, attachment.filename)
