"""Parse a typed slash command (`/context set text: ...`) against the synced command schema.

Subcommands are words after the name; options are `name: value`, a value running until the next
known option name of that command. With text before the first `name:` and a command that has a
single option, that text is the option's value (`/sentiment I love this`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.sim.entities import SyncedCommand
from bot.sim.errors import OptionError
from bot.sim.options import leaf_options, split_command_path


@dataclass(frozen=True)
class ParsedCommand:
    """A typed command: the command name with its subcommand path, and raw option text."""

    name: str
    path: tuple[str, ...]
    options: dict[str, str]

    @property
    def qualified_name(self) -> str:
        return " ".join([self.name, *self.path])


def command_name(line: str) -> str:
    """The first word after the slash ("" when the line is not a command)."""
    text = line.strip()
    if not text.startswith("/"):
        return ""
    words = text[1:].split(maxsplit=1)
    return words[0] if words else ""


def parse_command_line(line: str, command: SyncedCommand) -> ParsedCommand:
    """Split `line` (starting with `/name`) into subcommand path and option values."""
    text = line.strip()[1:].strip()
    name, _, rest = text.partition(" ")
    if name != command.name:
        raise ValueError(f"line is for /{name}, not /{command.name}")
    words = rest.split()
    path, _ = split_command_path(command, words)
    remainder = rest.strip()
    for part in path:  # drop the subcommand words from the front of the remainder
        remainder = remainder[len(part) :].lstrip() if remainder.startswith(part) else remainder
    schema = leaf_options(command, path)
    names = sorted((o["name"] for o in schema), key=len, reverse=True)
    options: dict[str, str] = {}
    if not names:
        if remainder:
            raise OptionError(f"/{' '.join([name, *path])} takes no options; got {remainder!r}")
        return ParsedCommand(name, tuple(path), options)
    pattern = re.compile(r"(?:^|(?<=\s))(" + "|".join(map(re.escape, names)) + r"):")
    matches = list(pattern.finditer(remainder))
    leading = remainder[: matches[0].start()] if matches else remainder
    if leading.strip():
        if len(schema) == 1:
            options[schema[0]["name"]] = leading.strip()
        else:
            shown = " ".join(f"{n}: …" for n in (o["name"] for o in schema))
            raise OptionError(
                f"write options as name: value, e.g. /{' '.join([name, *path])} {shown}"
            )
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(remainder)
        option = match.group(1)
        if option in options:
            raise OptionError(f"option {option!r} given twice")
        options[option] = remainder[match.end() : end].strip()
    return ParsedCommand(name, tuple(path), options)
