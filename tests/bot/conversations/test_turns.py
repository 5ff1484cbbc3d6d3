"""Discord messages to conversation turns: roles, names, the bot's words read back."""

from __future__ import annotations

from bot.conversations.records import RecordedMessage
from bot.conversations.turns import Said, Turn, bot_words, merged, to_turns
from bot.text import plain

BOT = 1


def said(mid: int, name: str, text: str, **kwargs: object) -> Said:
    by_bot = name == "hfcord"
    return Said(mid, BOT if by_bot else mid * 10, name, by_bot=by_bot, text=text, **kwargs)  # type: ignore[arg-type]


def test_the_bots_words_come_back_as_the_model_wrote_them() -> None:
    written = (
        "# Not a header\n> not a quote\n- item *bold* _it_ ~~s~~ ||spoiler|| `code` [a](b) \\o/"
    )
    shown = plain(written) + "\n-# 12 tokens · 0.4 s · finished · tiny"
    assert bot_words(shown) == written
    assert bot_words(plain("-# looks like a footer")) == "-# looks like a footer"
    assert bot_words("…\n-# stopped") == ""  # nothing was written
    assert bot_words("…") == ""


def test_roles_names_prompts_notes_and_what_was_not_read() -> None:
    messages = [
        said(1, "hfcord", ""),  # the echo of a /chat prompt: the person's turn
        said(2, "hfcord", plain("Hello *Ada*!") + "\n-# 3 tokens"),
        said(3, "Ada", "I sent a picture", unread=("cat.png",)),
        said(4, "Bob", "", hidden=True),  # Discord withheld it
        said(5, "hfcord", "I can't read that message: ..."),  # a note
        said(6, "Bob", "   "),  # nothing said
        said(7, "Bob", "And me?"),
    ]
    recorded = {
        1: RecordedMessage(1, 99, "prompt", 10, "Ada", "Hi, I am Ada."),
        5: RecordedMessage(5, 99, "note", None, None, None),
    }
    turns = to_turns(messages, recorded)
    assert turns.turns == (
        Turn("user", "Ada: Hi, I am Ada."),
        Turn("assistant", "Hello *Ada*!"),
        Turn("user", "Ada: I sent a picture\n[attachments not read: cat.png]"),
        Turn("user", "Bob: And me?"),
    )
    assert turns.speakers == ("Ada", "Bob")
    assert (turns.hidden, turns.unread) == (1, ("cat.png",))
    assert merged(turns.turns) == [
        Turn("user", "Ada: Hi, I am Ada."),
        Turn("assistant", "Hello *Ada*!"),
        Turn("user", "Ada: I sent a picture\n[attachments not read: cat.png]\nBob: And me?"),
    ]
