"""Discord's documented limits on messages and application commands, with Discord's error bodies."""

from __future__ import annotations

import re
from typing import Any

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
MAX_FILES = 10
MAX_COMMANDS_CHAT = 100
MAX_COMMANDS_MENU = 5
COMMAND_NAME = re.compile(r"^[-_'\w]{1,32}$")

_USER_MENTION = re.compile(r"<@!?(\d{15,21})>")
_ROLE_MENTION = re.compile(r"<@&(\d{15,21})>")
_EVERYONE = re.compile(r"@(everyone|here)\b")


class DiscordHTTPError(Exception):
    """An error response exactly as Discord would send it."""

    def __init__(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None):
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.body: dict[str, Any] = {"message": message, "code": code}
        if errors:
            self.body["errors"] = errors


def unknown(code: int, what: str) -> DiscordHTTPError:
    """Discord's 404 for an id or token it does not know ("Unknown Message", code 10008...)."""
    return DiscordHTTPError(404, code, f"Unknown {what}")


def json_object(body: Any) -> dict[str, Any]:
    """A request's JSON body as an object ({} when there was none)."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise DiscordHTTPError(400, 50109, "The request body contains invalid JSON.")
    return body


class FormErrors:
    """Collects Invalid Form Body (50035) errors keyed by their dotted field path."""

    def __init__(self) -> None:
        self._errors: dict[str, Any] = {}

    def add(self, path: str, code: str, message: str) -> None:
        node = self._errors
        for part in path.split("."):
            node = node.setdefault(part, {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def raise_if_any(self) -> None:
        if self._errors:
            raise DiscordHTTPError(400, 50035, "Invalid Form Body", self._errors)


def _max_length(errors: FormErrors, path: str, value: Any, limit: int) -> None:
    if isinstance(value, str) and len(value) > limit:
        errors.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def validate_message_body(body: dict[str, Any], *, prefix: str = "") -> None:
    """Check a message create/edit body against Discord's limits; raise DiscordHTTPError."""
    errors = FormErrors()
    p = prefix
    content = body.get("content")
    if content is not None and not isinstance(content, str):
        errors.add(f"{p}content", "BASE_TYPE_STRING", "Could not interpret value as string.")
    _max_length(errors, f"{p}content", content, MAX_CONTENT)
    embeds = body.get("embeds") or []
    if len(embeds) > MAX_EMBEDS:
        errors.add(
            f"{p}embeds", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_EMBEDS} or fewer in length."
        )
    total = 0
    for i, embed in enumerate(embeds):
        e = f"{p}embeds.{i}"
        _max_length(errors, f"{e}.title", embed.get("title"), 256)
        _max_length(errors, f"{e}.description", embed.get("description"), 4096)
        fields = embed.get("fields") or []
        if len(fields) > 25:
            errors.add(f"{e}.fields", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        for j, f in enumerate(fields):
            _max_length(errors, f"{e}.fields.{j}.name", f.get("name"), 256)
            _max_length(errors, f"{e}.fields.{j}.value", f.get("value"), 1024)
            for key in ("name", "value"):
                if not f.get(key):
                    errors.add(
                        f"{e}.fields.{j}.{key}", "BASE_TYPE_REQUIRED", "This field is required"
                    )
        _max_length(errors, f"{e}.footer.text", (embed.get("footer") or {}).get("text"), 2048)
        _max_length(errors, f"{e}.author.name", (embed.get("author") or {}).get("name"), 256)
        total += sum(
            len(str(x or ""))
            for x in (
                embed.get("title"),
                embed.get("description"),
                (embed.get("footer") or {}).get("text"),
                (embed.get("author") or {}).get("name"),
            )
        )
        total += sum(len(str(f.get("name") or "")) + len(str(f.get("value") or "")) for f in fields)
    if total > MAX_EMBED_TOTAL:
        errors.add(
            f"{p}embeds",
            "MAX_EMBED_SIZE_EXCEEDED",
            f"Embed size exceeds maximum size of {MAX_EMBED_TOTAL}",
        )
    flags = int(body.get("flags") or 0)
    if not flags & (1 << 15):
        _validate_components(errors, f"{p}components", body.get("components") or [])
    _validate_allowed_mentions(errors, f"{p}allowed_mentions", body.get("allowed_mentions"))
    errors.raise_if_any()


def _validate_components(errors: FormErrors, path: str, rows: list[dict[str, Any]]) -> None:
    if len(rows) > 5:
        errors.add(path, "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
    seen: set[str] = set()
    for i, row in enumerate(rows):
        r = f"{path}.{i}"
        if row.get("type") != 1:
            errors.add(
                f"{r}.type", "COMPONENT_LAYOUT_WIDTH_EXCEEDED", "Top-level must be action rows."
            )
            continue
        children = row.get("components") or []
        if not 1 <= len(children) <= 5:
            errors.add(
                f"{r}.components", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length."
            )
        for j, child in enumerate(children):
            c = f"{r}.components.{j}"
            _max_length(errors, f"{c}.label", child.get("label"), 80)
            custom_id = child.get("custom_id")
            if child.get("type") == 2 and child.get("style") == 5:
                if not child.get("url"):
                    errors.add(f"{c}.url", "BASE_TYPE_REQUIRED", "This field is required")
                continue
            if child.get("type") == 2 and child.get("style") == 6:
                continue  # premium button: sku_id instead of custom_id
            if not custom_id:
                errors.add(f"{c}.custom_id", "BASE_TYPE_REQUIRED", "This field is required")
                continue
            _max_length(errors, f"{c}.custom_id", custom_id, 100)
            if custom_id in seen:
                errors.add(
                    f"{c}.custom_id",
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated",
                )
            seen.add(custom_id)


def _validate_allowed_mentions(errors: FormErrors, path: str, allowed: Any) -> None:
    if not allowed:
        return
    parse = allowed.get("parse") or []
    for kind in ("users", "roles"):
        if kind in parse and allowed.get(kind):
            errors.add(
                f"{path}.parse",
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.',
            )


def require_not_empty(
    content: str, embeds: list[Any], attachments: int, components: list[Any]
) -> None:
    if not content and not embeds and not attachments and not components:
        raise DiscordHTTPError(400, 50006, "Cannot send an empty message")


def resolve_mentions(
    content: str,
    allowed: dict[str, Any] | None,
    *,
    replied_user_id: int | None = None,
) -> frozenset[str]:
    """The mentions Discord would resolve (and could notify) for this content and allowed_mentions.

    With no allowed_mentions, Discord parses everything in the content, and a reply pings its author.
    """
    users = {int(m) for m in _USER_MENTION.findall(content)}
    roles = {int(m) for m in _ROLE_MENTION.findall(content)}
    everyone = bool(_EVERYONE.search(content))
    found: set[str] = set()
    if allowed is None:
        found |= {f"user:{u}" for u in users}
        found |= {f"role:{r}" for r in roles}
        if everyone:
            found.add("everyone")
        if replied_user_id is not None:
            found.add(f"replied_user:{replied_user_id}")
        return frozenset(found)
    parse = set(allowed.get("parse") or [])
    allowed_users = {int(u) for u in allowed.get("users") or []}
    allowed_roles = {int(r) for r in allowed.get("roles") or []}
    found |= {f"user:{u}" for u in users if "users" in parse or u in allowed_users}
    found |= {f"role:{r}" for r in roles if "roles" in parse or r in allowed_roles}
    if everyone and "everyone" in parse:
        found.add("everyone")
    if replied_user_id is not None and allowed.get("replied_user"):
        found.add(f"replied_user:{replied_user_id}")
    return frozenset(found)


_OPTION_TYPES = set(range(1, 12))


def validate_commands(commands: Any) -> None:
    """Check a bulk-overwrite body the way Discord does, raising 50035 with field paths."""
    errors = FormErrors()
    if not isinstance(commands, list):
        errors.add("_root", "BASE_TYPE_ARRAY", "Must be an array.")
        errors.raise_if_any()
    seen: set[tuple[str, int]] = set()
    counts = {1: 0, 2: 0, 3: 0}
    for i, command in enumerate(commands):
        path = str(i)
        ctype = int(command.get("type", 1))
        counts[ctype] = counts.get(ctype, 0) + 1
        name = command.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 32:
            errors.add(
                f"{path}.name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length."
            )
        elif ctype == 1 and (not COMMAND_NAME.match(name) or name != name.lower()):
            errors.add(
                f"{path}.name",
                "APPLICATION_COMMAND_INVALID_NAME",
                "Command name is invalid",
            )
        if (name, ctype) in seen:
            errors.add(
                f"{path}.name",
                "APPLICATION_COMMANDS_DUPLICATE_NAME",
                f"Application command names must be unique: {name}",
            )
        seen.add((name, ctype))
        description = command.get("description", "")
        if ctype == 1:
            if not isinstance(description, str) or not 1 <= len(description) <= 100:
                errors.add(
                    f"{path}.description",
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
            _validate_options(errors, f"{path}.options", command.get("options") or [], depth=0)
        elif description:
            errors.add(
                f"{path}.description",
                "APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION",
                "Context menu commands cannot have description",
            )
    if counts.get(1, 0) > MAX_COMMANDS_CHAT:
        errors.add("_root", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer chat input commands.")
    for ctype in (2, 3):
        if counts.get(ctype, 0) > MAX_COMMANDS_MENU:
            errors.add("_root", "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer context menu commands.")
    errors.raise_if_any()


def _validate_options(
    errors: FormErrors, path: str, options: list[dict[str, Any]], depth: int
) -> None:
    if len(options) > 25:
        errors.add(path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    names: set[str] = set()
    optional_seen = False
    has_sub = any(o.get("type") in (1, 2) for o in options)
    for i, option in enumerate(options):
        p = f"{path}.{i}"
        otype = option.get("type")
        name = option.get("name")
        if otype not in _OPTION_TYPES:
            errors.add(
                f"{p}.type", "BASE_TYPE_CHOICES", f"Value must be one of {sorted(_OPTION_TYPES)}."
            )
        if not isinstance(name, str) or not COMMAND_NAME.match(name) or name != name.lower():
            errors.add(f"{p}.name", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        if isinstance(name, str) and name in names:
            errors.add(
                f"{p}.name",
                "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                "Option names must be unique",
            )
        if isinstance(name, str):
            names.add(name)
        description = option.get("description")
        if not isinstance(description, str) or not 1 <= len(description) <= 100:
            errors.add(
                f"{p}.description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
        if has_sub and otype not in (1, 2):
            errors.add(
                f"{p}.type",
                "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
                "Sub-command and sub-command group option types are mutually exclusive to all other types",
            )
        if otype in (1, 2):
            if (otype == 2 and depth >= 1) or (otype == 1 and depth >= 2):
                errors.add(
                    f"{p}.type", "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID", "Nesting too deep"
                )
            _validate_options(errors, f"{p}.options", option.get("options") or [], depth + 1)
            continue
        if option.get("required"):
            if optional_seen:
                errors.add(
                    f"{p}.required",
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            optional_seen = True
        choices = option.get("choices") or []
        if len(choices) > 25:
            errors.add(f"{p}.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        if choices and option.get("autocomplete"):
            errors.add(
                f"{p}.autocomplete",
                "APPLICATION_COMMAND_OPTIONS_CHOICES_AUTOCOMPLETE",
                "Autocomplete and choices are mutually exclusive",
            )
