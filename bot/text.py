"""Small text helpers for formatting replies, and the one place text is made safe to show.

Model output (generated text, a promoted model's label names), user text the bot repeats and
file names are shown through :func:`plain` (or :func:`code_span` inside backticks): their
markdown is shown as typed instead of rendered, so none of it can phish with a masked link
(``[free nitro](https://evil)`` shows its real address), hide text in a spoiler, start a header
or quote, or open a code block that swallows the rest of the reply.
"""

from __future__ import annotations

import re

# Bare links, as Discord finds them (discord.py's rule): kept as typed, because an escape
# inside a link would change where it goes. Discord shows them as their own address.
_URL = re.compile(r"<[^: >]+:/[^ >]+>|(?:https?|steam)://[^\s<]+[^<.,:;\"'\]\s]")
# Inline markdown: emphasis, strike, spoiler, code, masked links (both brackets), the escape.
_INLINE = re.compile(r"[\\*_~|`\[\]]")
# Markdown that works at the start of a line: quote, header, subtext ("-#") and list.
_LINE_START = re.compile(r"^([ \t]*)([>#-])", re.MULTILINE)


def plain(text: str) -> str:
    """``text`` escaped so Discord shows it exactly as written (links stay clickable, visibly)."""
    out: list[str] = []
    pos = 0
    for link in _URL.finditer(text):
        out.append(_escape(text[pos : link.start()]))
        out.append(link.group(0))
        pos = link.end()
    out.append(_escape(text[pos:]))
    return "".join(out)


def _escape(text: str) -> str:
    text = _INLINE.sub(lambda m: "\\" + m.group(0), text)
    return _LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), text)


def code_span(text: str) -> str:
    """``text`` as inline code (a name, a label): backticks and line breaks in it cannot end
    the span early."""
    inner = " ".join(text.replace("`", "\u02cb").split()) or " "
    return f"`{inner}`"


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
