"""What careless or hostile Discord users send: texts and files that are empty, huge, binary,
wrongly encoded, truncated, deeply nested, or written to ping, phish or break formatting.
File names never hold a "/" (no file system allows one, so no upload has one).

Each item has a short ``what`` naming the case, so a test or ``bench/soak.py`` can report which
input a reply answered. Good inputs (a small CSV that trains, a UTF-8 context file) are here too,
next to their broken variants. Everything is built from the standard library, deterministically
(``random.Random(seed)`` where there is randomness).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

PHISHING_URL = "https://discord-gift.example/claim"


@dataclass(frozen=True)
class HostileText:
    """A text option's value and what it tries."""

    what: str
    text: str


@dataclass(frozen=True)
class HostileFile:
    """An upload: its file name, its bytes and what it tries."""

    what: str
    filename: str
    data: bytes


# -------------------------------------------------------------------------------- texts


def hostile_texts(*, user_id: int, role_id: int, limit: int = 6000) -> list[HostileText]:
    """Texts for any string option; ``limit`` is the longest a Discord client lets through
    (6,000 characters for a string option). ``user_id``/``role_id`` are mention targets."""
    return [
        HostileText("empty", ""),
        HostileText("blank", "   \n\t  "),
        HostileText("huge", ("All work and no play makes a dull bot. " * 200)[:limit]),
        HostileText("one long word", "x" * limit),
        HostileText(
            "mentions",
            f"@everyone @here <@{user_id}> <@!{user_id}> <@&{role_id}> look at this",
        ),
        HostileText("masked link", f"[free nitro, click here]({PHISHING_URL}) <{PHISHING_URL}>"),
        HostileText("markdown soup", "**bold *it _u ~~s ||spoiler `code" * 40),
        HostileText("open code fence", "```py\nprint('never closed')\n" + "line\n" * 50),
        HostileText("newline flood", "\n" * 3000 + "end"),
        HostileText("emoji flood", "😀" * 1500),  # 3,000 UTF-16 units, as Discord counts them
        HostileText("right-to-left override", "safe\u202egnp.exe and \u200b\u200bzero width"),
        HostileText("combining marks", "Z" + "\u0336\u0334\u0337" * 400),
        HostileText("nul and controls", "a\x00b\x01c\x1bd\x7f"),
        HostileText("heading and subtext", "# HEADING\n-# subtext\n> quote\n>>> block"),
    ]


# ------------------------------------------------------------------ training data (CSV etc.)

GOOD_CSV = "text,label\n" + "".join(
    f"{text} {i},{label}\n"
    for i in range(16)
    for text, label in (("what a lovely sunny day", "happy"), ("this is awful and sad", "sad"))
)


def good_training_csv() -> HostileFile:
    """32 balanced rows of text-classification data that validate and train."""
    return HostileFile("good csv", "moods.csv", GOOD_CSV.encode())


def deep_json(depth: int) -> str:
    """An array nested ``depth`` levels deep: ``[[[...]]]``."""
    return "[" * depth + "]" * depth


def big_csv(approx_bytes: int) -> bytes:
    """Many tiny rows (a few bytes each): cheap to send, expensive to parse naively."""
    row = b"ok,1\nno,0\n"
    return b"text,label\n" + row * max(1, approx_bytes // len(row))


def training_files(*, seed: int = 0, big_bytes: int = 2_000_000) -> list[HostileFile]:
    """Broken training uploads for ``/finetune start task:text-classification``; each should be
    refused with a sentence (naming the line where one applies), never an error id."""
    rng = random.Random(seed)
    good = GOOD_CSV.encode()
    squad = json.dumps(
        {
            "data": [
                {
                    "paragraphs": [
                        {
                            "context": "Paris is in France.",
                            "qas": [{"id": "1", "question": "Where?", "answers": []}],
                        }
                    ]
                }
            ]
        }
    ).encode()
    return [
        HostileFile("empty file", "empty.csv", b""),
        HostileFile("blank file", "blank.csv", b"\n\n   \n"),
        HostileFile("header only", "header.csv", b"text,label\n"),
        HostileFile("binary", "data.csv", bytes(rng.randrange(256) for _ in range(4096))),
        HostileFile("png bytes", "data.csv", b"\x89PNG\r\n\x1a\n" + bytes(512)),
        HostileFile("UTF-16", "utf16.csv", GOOD_CSV.encode("utf-16")),
        HostileFile(
            "latin-1", "latin1.csv", "text,label\ncafé crème,happy\nnoël,sad\n".encode("latin-1")
        ),
        HostileFile("truncated UTF-8", "cut.csv", "text,label\nnaïve,happy\ncafé".encode()[:-1]),
        HostileFile("truncated JSON", "squad.json", squad[: len(squad) // 2]),
        HostileFile("deep JSON array", "deep.json", deep_json(5000).encode()),
        HostileFile(
            "deep JSONL field",
            "deep.jsonl",
            ('{"text": ' + deep_json(5000) + ', "label": "happy"}\n').encode() * 4,
        ),
        HostileFile(
            "deep JSON object",
            "deep-object.json",
            ('{"a":' * 3000 + "1" + "}" * 3000).encode(),
        ),
        HostileFile("one label only", "one.csv", b"text,label\n" + b"same again,happy\n" * 20),
        HostileFile("no label column", "nolabel.csv", b"words\n" + b"just text\n" * 20),
        HostileFile("unterminated quote", "quote.csv", b'text,label\n"never closed,happy\n' + good),
        HostileFile("ragged rows", "ragged.csv", b"text,label\na,b,c,d\ne\n" + good),
        HostileFile(
            "huge field", "field.csv", b"text,label\n" + b"y" * 600_000 + b",happy\n" + good
        ),
        HostileFile("many tiny rows", "big.csv", big_csv(big_bytes)),
        HostileFile(
            "markdown and mentions in the file name",
            "@everyone <@&1> **b** `t` ||s|| [x](discord-gift.example).csv",
            good,
        ),
        HostileFile("long file name", ("n" * 180) + ".csv", good),
    ]


# --------------------------------------------------------------------- context uploads (.txt)


def good_context_file(marker: str) -> HostileFile:
    """A UTF-8 context file whose text carries ``marker`` (so a reader can tell it apart)."""
    text = (
        f"{marker}\nThe Eiffel Tower is in Paris. It was finished in 1889 and is 330 metres tall.\n"
        "The Louvre is the world's most visited museum.\r\n"
    )
    return HostileFile("good context file", "notes.txt", ("\ufeff" + text).encode())


def context_files(*, cap_bytes: int, seed: int = 0) -> list[HostileFile]:
    """Broken ``/context upload`` files; ``cap_bytes`` is the bot's upload limit (one file is
    just over it). Each should be refused with a sentence."""
    rng = random.Random(seed)
    return [
        HostileFile("empty file", "empty.txt", b""),
        HostileFile("blank file", "blank.txt", b" \n\n "),
        HostileFile("binary", "notes.txt", bytes(rng.randrange(256) for _ in range(4096))),
        HostileFile("UTF-16", "utf16.txt", "Paris is in France.\n".encode("utf-16")),
        HostileFile("truncated UTF-8", "cut.txt", "Les élèves étudient à Paris, é".encode()[:-1]),
        HostileFile("latin-1", "latin1.md", "Noël à Paris, café crème.".encode("latin-1")),
        HostileFile("pdf", "paper.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"),
        HostileFile("no extension", "README", b"plain words"),
        HostileFile("over the size limit", "big.txt", b"a" * (cap_bytes + 1)),
        HostileFile(
            "mentions and links inside",
            "ping.md",
            f"@everyone <@&1> [claim]({PHISHING_URL})\n".encode() * 20,
        ),
        HostileFile(
            "file name with markdown", "**b** `t` @here [x](discord-gift.example).txt", b"Paris."
        ),
    ]
