"""From Discord messages to the turns of a conversation (pure functions; no Discord calls).

The bot's messages are ``assistant`` turns, read back as the model wrote them (the footer
line removed, the escaping ``bot.text.plain`` added taken off again); everyone else's are
``user`` turns starting with the author's display name. The bot's own messages that are not its
words are told apart by the records: the echo of a /chat prompt is that person's turn, a note
(a refusal, an error) is left out. One message is one turn, so trimming can drop messages one
by one; :func:`merged` joins consecutive turns of one role, as chat templates expect user and
assistant turns to alternate.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from bot.conversations.records import RecordedMessage

TurnRole = Literal["user", "assistant"]

# A reply's footer: its last lines, as Discord's small text ("-# ..."). Model text starting
# a line with "-" is escaped ("\-") by bot.text.plain, so it never looks like one.
_FOOTER_LINE = re.compile(r"\n-# [^\n]*$")
# What bot.text.plain escapes, with the backslash it adds.
_ESCAPED = re.compile(r"\\([\\*_~|`\[\]>#-])")
# What a reply shows before the model has written anything.
PLACEHOLDERS = frozenset({"", "…"})


@dataclass(frozen=True)
class Said:
    """One Discord message as a conversation reads it.

    ``text`` is the content (for people: mentions shown as names, a leading mention of the bot
    removed, readable text attachments added); ``unread`` names the attachments that could not
    be read; ``hidden`` is true when Discord withheld the content (no Message Content intent).
    """

    id: int
    author_id: int
    author_name: str
    by_bot: bool
    text: str
    unread: tuple[str, ...] = ()
    hidden: bool = False


@dataclass(frozen=True)
class Turn:
    role: TurnRole
    text: str


@dataclass(frozen=True)
class Turns:
    """A conversation's turns, oldest first, and what could not be used: messages Discord hid
    (``hidden``) and attachments that were not read (``unread``, by file name)."""

    turns: tuple[Turn, ...]
    speakers: tuple[str, ...]  # people's names, as their turns begin
    hidden: int
    unread: tuple[str, ...]


def bot_words(content: str) -> str:
    """The model's text in a reply the bot posted (footer removed, escaping undone)."""
    text = _FOOTER_LINE.sub("", content)
    text = _ESCAPED.sub(r"\1", text).strip()
    return "" if text in PLACEHOLDERS else text


def user_turn_text(name: str, text: str, unread: Sequence[str] = ()) -> str:
    """A person's turn: their name, what they wrote, and the attachments that were not read."""
    line = f"{name}: {text}".rstrip()
    if unread:
        line += "\n[attachments not read: " + ", ".join(unread) + "]"
    return line


def to_turns(said: Sequence[Said], recorded: Mapping[int, RecordedMessage]) -> Turns:
    """The turns of ``said`` (oldest first); see the module docstring for the rules."""
    turns: list[Turn] = []
    speakers: list[str] = []
    hidden = 0
    unread: list[str] = []

    def add(role: TurnRole, text: str) -> None:
        turns.append(Turn(role, text))

    for message in said:
        record = recorded.get(message.id) if message.by_bot else None
        if record is not None:
            if record.kind == "prompt" and record.content:
                name = record.author_name or "someone"
                speakers.append(name)
                add("user", user_turn_text(name, record.content))
            continue
        if message.by_bot:
            words = bot_words(message.text)
            if words:
                add("assistant", words)
            continue
        if message.hidden:
            hidden += 1
            continue
        if not message.text.strip() and not message.unread:
            continue
        speakers.append(message.author_name)
        unread.extend(message.unread)
        add("user", user_turn_text(message.author_name, message.text, message.unread))
    return Turns(
        turns=tuple(turns),
        speakers=tuple(dict.fromkeys(speakers)),
        hidden=hidden,
        unread=tuple(unread),
    )


def merged(turns: Sequence[Turn]) -> list[Turn]:
    """``turns`` with consecutive turns of one role joined (line by line)."""
    out: list[Turn] = []
    for turn in turns:
        if out and out[-1].role == turn.role:
            out[-1] = Turn(turn.role, f"{out[-1].text}\n{turn.text}")
        else:
            out.append(turn)
    return out
