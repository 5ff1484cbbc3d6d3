"""Parsing typed commands against a synced schema (the playground's input)."""

from __future__ import annotations

import pytest

from bot.sim import OptionError, SyncedCommand
from bot.sim.commandline import command_name, parse_command_line
from bot.sim.errors import CommandNotFound


def command(name: str, options: list[dict]) -> SyncedCommand:
    return SyncedCommand(
        id=1, name=name, type=1, guild_id=None, payload={"name": name, "options": options}
    )


GENERATE = command(
    "generate",
    [
        {"type": 3, "name": "prompt", "description": "p", "required": True},
        {"type": 4, "name": "max_tokens", "description": "m"},
        {"type": 10, "name": "temperature", "description": "t"},
    ],
)
CONTEXT = command(
    "context",
    [
        {
            "type": 1,
            "name": "set",
            "description": "s",
            "options": [{"type": 3, "name": "text", "description": "t", "required": True}],
        },
        {"type": 1, "name": "show", "description": "s", "options": []},
    ],
)
SENTIMENT = command(
    "sentiment", [{"type": 3, "name": "text", "description": "t", "required": True}]
)


def test_values_run_until_the_next_known_option_name() -> None:
    parsed = parse_command_line(
        "/generate prompt: Tell me a story: a long one max_tokens: 40", GENERATE
    )
    assert parsed.options == {"prompt": "Tell me a story: a long one", "max_tokens": "40"}
    assert parsed.path == ()


def test_option_order_is_free_and_unknown_words_stay_in_values() -> None:
    parsed = parse_command_line(
        "/generate temperature: 0.5 prompt: why is max_tokens so low", GENERATE
    )
    assert parsed.options == {"temperature": "0.5", "prompt": "why is max_tokens so low"}


def test_subcommands_are_words() -> None:
    parsed = parse_command_line("/context set text: The sky is blue.", CONTEXT)
    assert parsed.qualified_name == "context set" and parsed.options == {"text": "The sky is blue."}
    assert parse_command_line("/context show", CONTEXT).path == ("show",)


def test_single_option_commands_take_bare_text() -> None:
    assert parse_command_line("/sentiment I love this", SENTIMENT).options == {
        "text": "I love this"
    }


def test_bare_text_is_refused_when_ambiguous_or_not_expected() -> None:
    with pytest.raises(OptionError, match="name: value"):
        parse_command_line("/generate once upon a time", GENERATE)
    with pytest.raises(OptionError, match="takes no options"):
        parse_command_line("/context show everything", CONTEXT)
    with pytest.raises(OptionError, match="given twice"):
        parse_command_line("/generate prompt: a prompt: b", GENERATE)


def test_missing_subcommand_names_the_choices() -> None:
    with pytest.raises(CommandNotFound, match="needs a subcommand: set, show"):
        parse_command_line("/context", CONTEXT)


def test_command_name() -> None:
    assert command_name("  /ask question: x") == "ask"
    assert command_name("hello") == ""
