"""Small text helpers for formatting replies."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+|\n\s*\n|\n(?=\s*[-*#>\d])")


def sentence_around(text: str, start: int, end: int) -> str:
    """The sentence (or line) of `text` that holds the span `[start, end)`."""
    start = max(0, min(start, len(text)))
    end = max(start, min(end, len(text)))
    left = 0
    for match in _SENTENCE_END.finditer(text, 0, start):
        left = match.end()
    after = _SENTENCE_END.search(text, end)
    right = after.start() if after else len(text)
    # A "sentence" can be a whole paragraph without punctuation; keep quotes readable.
    sentence = text[left:right].strip()
    if len(sentence) > 600:
        lo = max(left, start - 280)
        hi = min(right, end + 280)
        sentence = ("…" if lo > left else "") + text[lo:hi].strip() + ("…" if hi < right else "")
    return sentence


def quote(text: str) -> str:
    """A Discord block quote of `text`."""
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines() or [""])


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with an ellipsis."""
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"


def format_duration(seconds: float | None) -> str:
    """A duration as ``1h05m`` or ``4m07s`` (``?`` when unknown), for progress and results."""
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
