"""Text shown as typed: no masked links, no markdown from models, labels, users or file names."""

from __future__ import annotations

import re

import pytest

from bot.reply import split_message
from bot.text import code_span, plain

# A masked link as Discord renders one: [text](target) with neither bracket escaped.
MASKED_LINK = re.compile(r"(?<!\\)\[[^\]]*(?<!\\)\]\(")


def shown(text: str) -> str:
    """What Discord displays for escaped text: each backslash escape is consumed."""
    return re.sub(r"\\(.)", r"\1", text)


@pytest.mark.parametrize(
    "hostile",
    [
        "[free nitro](https://evil.example/claim)",
        "Claim [here](https://evil.example) and [there](<https://evil.example/2>) now",
        "[[nested](https://evil.example)](https://other.example)",
        '[paypal](https://evil.example "Official PayPal")',
    ],
)
def test_masked_links_never_render_and_their_address_stays_visible(hostile: str) -> None:
    escaped = plain(hostile)
    assert not MASKED_LINK.search(escaped), escaped
    assert "https://evil.example" in escaped  # the real address, as a bare link
    assert shown(escaped) == hostile  # and the text reads as it was written


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("**bold** and __underline__", r"\*\*bold\*\* and \_\_underline\_\_"),
        ("||spoiler|| ~~gone~~", r"\|\|spoiler\|\| \~\~gone\~\~"),
        ("```py\nprint(1)\n```", "\\`\\`\\`py\nprint(1)\n\\`\\`\\`"),
        ("# Big\n## Bigger\n-# small\n> quoted\n>>> all the rest", None),
        ("a \\ backslash", r"a \\ backslash"),
        ("- item\n  - sub item", "\\- item\n  \\- sub item"),
    ],
)
def test_markdown_is_shown_as_typed(text: str, expected: str | None) -> None:
    escaped = plain(text)
    if expected is not None:
        assert escaped == expected
    assert shown(escaped) == text
    for line in escaped.splitlines():
        assert not re.match(r"\s*(#|-#|>)", line), line  # no header, subtext or quote


def test_bare_links_are_kept_as_typed_so_they_still_lead_where_they_say() -> None:
    url = "https://example.com/some_page*with~marks?q=a_b"
    assert plain(f"see {url} now") == f"see {url} now"
    assert plain(f"**{url}**") == f"\\*\\*{url}**"  # Discord ends the link at its own rule


def test_code_span_cannot_be_broken_out_of() -> None:
    assert code_span("PER") == "`PER`"
    assert code_span("x` **bold** `y") == "`x\u02cb **bold** \u02cby`"
    assert code_span("two\nlines") == "`two lines`"
    assert code_span("") == "` `"


def test_a_split_never_separates_an_escape_from_what_it_escapes() -> None:
    text = plain("*" * 1500)  # 3,000 characters of "\*"
    chunks = split_message(text)
    assert len(chunks) == 2 and "".join(chunks) == text
    assert all(not chunk.endswith("\\") for chunk in chunks)
