"""Turn a driver's `{name: value}` into the options and resolved data Discord's client would send.

Values are checked against the synced schema the way Discord's client checks them before a user
can submit (types, required, choices, min/max), so the bot sees only payloads Discord can send.
Strings are accepted for every type (the playground types text) and parsed per option type.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.sim.entities import (
    SimAttachment,
    SimChannel,
    SimGuild,
    SimRole,
    SimUser,
    SyncedCommand,
)
from bot.sim.errors import CommandNotFound, OptionError
from bot.sim.state import SimState

SUB_COMMAND = 1
SUB_COMMAND_GROUP = 2
STRING = 3
INTEGER = 4
BOOLEAN = 5
USER = 6
CHANNEL = 7
ROLE = 8
MENTIONABLE = 9
NUMBER = 10
ATTACHMENT = 11

TYPE_NAMES = {
    STRING: "text",
    INTEGER: "integer",
    BOOLEAN: "true/false",
    USER: "user",
    CHANNEL: "channel",
    ROLE: "role",
    MENTIONABLE: "user or role",
    NUMBER: "number",
    ATTACHMENT: "file",
}
MAX_SAFE_INTEGER = 2**53
MAX_STRING_OPTION = 6000
_ID = re.compile(r"^<[@#][!&]?(\d+)>$|^(\d{15,21})$")


@dataclass
class Invocation:
    """What the interaction's `data` will carry for one chat-input command."""

    command: SyncedCommand
    path: list[str]
    options: list[dict[str, Any]]
    resolved: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def qualified_name(self) -> str:
        return " ".join([self.command.name, *self.path])


def find_command(
    state: SimState, name: str, guild_id: int | None, command_type: int = 1
) -> SyncedCommand:
    for command in state.commands_for(guild_id):
        if command.name == name and command.type == command_type:
            return command
    known = sorted(c.name for c in state.commands_for(guild_id) if c.type == command_type)
    raise CommandNotFound(
        f"no synced command {name!r} (type {command_type}) here; synced: {', '.join(known) or 'none'}"
    )


def leaf_options(command: SyncedCommand, path: list[str]) -> list[dict[str, Any]]:
    """The option schema of a command or subcommand path (raises if the path is incomplete)."""
    options = command.options
    walked = [command.name]
    for part in path:
        match = next(
            (
                o
                for o in options
                if o.get("name") == part and o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP)
            ),
            None,
        )
        if match is None:
            subs = [o["name"] for o in options if o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP)]
            raise CommandNotFound(
                f"/{' '.join(walked)} has no subcommand {part!r}; choose one of: {', '.join(subs) or 'none'}"
            )
        walked.append(part)
        options = list(match.get("options") or [])
    subs = [o["name"] for o in options if o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP)]
    if subs:
        raise CommandNotFound(f"/{' '.join(walked)} needs a subcommand: {', '.join(subs)}")
    return options


def split_command_path(command: SyncedCommand, words: list[str]) -> tuple[list[str], list[str]]:
    """Split words after the command name into (subcommand path, remaining words)."""
    path: list[str] = []
    options = command.options
    rest = list(words)
    while rest:
        match = next(
            (
                o
                for o in options
                if o.get("name") == rest[0] and o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP)
            ),
            None,
        )
        if match is None:
            break
        path.append(rest.pop(0))
        options = list(match.get("options") or [])
    return path, rest


class OptionResolver:
    """Builds an Invocation, resolving users, roles, channels and attachments against the state."""

    def __init__(self, state: SimState, guild: SimGuild | None) -> None:
        self.state = state
        self.guild = guild
        self.resolved: dict[str, dict[str, Any]] = {}

    def build(
        self, command: SyncedCommand, path: list[str], values: Mapping[str, Any]
    ) -> Invocation:
        schema = leaf_options(command, path)
        by_name = {o["name"]: o for o in schema}
        unknown = [name for name in values if name not in by_name]
        if unknown:
            valid = ", ".join(by_name) or "none"
            raise OptionError(
                f"/{' '.join([command.name, *path])} has no option {unknown[0]!r}; options: {valid}"
            )
        leaf: list[dict[str, Any]] = []
        for option in schema:
            name = option["name"]
            if name not in values or values[name] is None:
                if option.get("required"):
                    raise OptionError(f"option {name!r} is required")
                continue
            leaf.append(
                {"name": name, "type": option["type"], "value": self.convert(option, values[name])}
            )
        options: list[dict[str, Any]] = leaf
        # Wrap the leaf options in their subcommand (and group), innermost first.
        node_options = command.options
        chain: list[dict[str, Any]] = []
        for part in path:
            node = next(o for o in node_options if o.get("name") == part)
            chain.append(node)
            node_options = list(node.get("options") or [])
        for node in reversed(chain):
            options = [{"name": node["name"], "type": node["type"], "options": options}]
        return Invocation(command=command, path=list(path), options=options, resolved=self.resolved)

    def convert(self, option: dict[str, Any], value: Any) -> Any:
        otype = option["type"]
        name = option["name"]
        try:
            converted = self._convert(otype, value, option)
        except (TypeError, ValueError) as exc:
            raise OptionError(
                f"option {name!r} needs a {TYPE_NAMES.get(otype, otype)}, got {value!r} ({exc})"
            ) from None
        choices = option.get("choices") or []
        if choices:
            for choice in choices:
                if converted == choice["value"] or value == choice["name"]:
                    return choice["value"]
            allowed = ", ".join(str(c["value"]) for c in choices)
            raise OptionError(f"option {name!r} must be one of: {allowed}")
        return converted

    def _convert(self, otype: int, value: Any, option: dict[str, Any]) -> Any:
        if otype == STRING:
            if not isinstance(value, str):
                raise TypeError("not a string")
            low = int(option.get("min_length", 0))
            high = min(int(option.get("max_length", MAX_STRING_OPTION)), MAX_STRING_OPTION)
            if not low <= len(value) <= high:
                raise ValueError(f"length {len(value)} outside {low}..{high}")
            return value
        if otype == INTEGER:
            number: int | float = _parse_int(value)
            self._check_range(number, option)
            return number
        if otype == NUMBER:
            if isinstance(value, bool):
                raise TypeError("not a number")
            number = float(value)
            if not math.isfinite(number):
                raise ValueError("not finite")
            self._check_range(number, option)
            return number
        if otype == BOOLEAN:
            return _parse_bool(value)
        if otype == USER:
            return str(self._resolve_user(value).id)
        if otype == ROLE:
            return str(self._resolve_role(value).id)
        if otype == MENTIONABLE:
            try:
                return str(self._resolve_user(value).id)
            except (TypeError, ValueError):
                return str(self._resolve_role(value).id)
        if otype == CHANNEL:
            channel = self._resolve_channel(value)
            types = option.get("channel_types")
            if types and channel.type not in types:
                raise ValueError(f"channel type {channel.type} not in {types}")
            return str(channel.id)
        if otype == ATTACHMENT:
            if not isinstance(value, SimAttachment):
                raise TypeError("pass emu.attachment(filename, data)")
            self.resolved.setdefault("attachments", {})[str(value.id)] = (
                self.state.attachment_payload(value)
            )
            return str(value.id)
        raise ValueError(f"unsupported option type {otype}")

    @staticmethod
    def _check_range(number: float, option: dict[str, Any]) -> None:
        low = option.get("min_value")
        high = option.get("max_value")
        if low is not None and number < low:
            raise ValueError(f"below the minimum {low}")
        if high is not None and number > high:
            raise ValueError(f"above the maximum {high}")

    def _resolve_user(self, value: Any) -> SimUser:
        user: SimUser | None = value if isinstance(value, SimUser) else None
        if user is None:
            user = self._lookup(value, self.state.users, lambda u: (u.name, u.global_name))
        entry = self.resolved.setdefault("users", {})
        entry[str(user.id)] = self.state.user_payload(user)
        if self.guild is not None and user.id in self.guild.members:
            member = self.state.member_payload(
                self.guild, self.guild.members[user.id], with_user=False, with_permissions=True
            )
            self.resolved.setdefault("members", {})[str(user.id)] = member
        return user

    def _resolve_role(self, value: Any) -> SimRole:
        if self.guild is None:
            raise ValueError("roles need a guild")
        role: SimRole | None = value if isinstance(value, SimRole) else None
        if role is None:
            role = self._lookup(value, self.guild.roles, lambda r: (r.name,))
        self.resolved.setdefault("roles", {})[str(role.id)] = self.state.role_payload(role)
        return role

    def _resolve_channel(self, value: Any) -> SimChannel:
        channel: SimChannel | None = value if isinstance(value, SimChannel) else None
        if channel is None:
            pool = {c.id: c for c in self.guild.channels} if self.guild else self.state.channels
            text = value.lstrip("#") if isinstance(value, str) else value
            channel = self._lookup(text, pool, lambda c: (c.name,))
        payload = self.state.channel_payload(channel)
        payload["permissions"] = str(self.state.bot_permissions(self.guild))
        self.resolved.setdefault("channels", {})[str(channel.id)] = payload
        return channel

    @staticmethod
    def _lookup(value: Any, pool: Mapping[int, Any], names: Any) -> Any:
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise TypeError(f"cannot resolve {type(value).__name__}")
        text = str(value).strip()
        match = _ID.match(text)
        if match:
            found = pool.get(int(match.group(1) or match.group(2)))
            if found is not None:
                return found
        for item in pool.values():
            if text.lstrip("@") in [n for n in names(item) if n]:
                return item
        raise ValueError(f"nothing named {text!r}")


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("not an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("not a whole number")
        value = int(value)
    number = int(value)
    if abs(number) > MAX_SAFE_INTEGER:
        raise ValueError("outside Discord's integer range")
    return number


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "y", "1", "on"):
        return True
    if text in ("false", "no", "n", "0", "off"):
        return False
    raise ValueError("expected true or false")
