"""In-memory Discord entities of the emulator: users, guilds, channels, messages and recorded requests.

Entities are live, mutable state (the emulator updates them as the bot acts); what they record
(message revisions, requests) is frozen.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# Permission bits used by the emulator (Discord's values).
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
USE_APPLICATION_COMMANDS = 1 << 31
MANAGE_THREADS = 1 << 34
CREATE_PUBLIC_THREADS = 1 << 35
CREATE_PRIVATE_THREADS = 1 << 36
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 51) - 1

EVERYONE_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | SEND_MESSAGES_IN_THREADS
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | ADD_REACTIONS
    | USE_EXTERNAL_EMOJIS
    | USE_APPLICATION_COMMANDS
    | CREATE_PUBLIC_THREADS
    | CREATE_PRIVATE_THREADS
)

# Message flags.
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_HAS_THREAD = 1 << 5
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_COMPONENTS_V2 = 1 << 15

# Channel types.
GUILD_TEXT = 0
DM = 1
PUBLIC_THREAD = 11
PRIVATE_THREAD = 12


@dataclass(eq=False)
class SimUser:
    """A Discord user (people and the bot)."""

    id: int
    name: str
    global_name: str | None = None
    bot: bool = False

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"


@dataclass(eq=False)
class SimRole:
    """A guild role; the @everyone role has the guild's id."""

    id: int
    guild_id: int
    name: str
    permissions: int = 0
    position: int = 0
    managed: bool = False
    mentionable: bool = False
    color: int = 0

    @property
    def mention(self) -> str:
        return f"<@&{self.id}>"


@dataclass(eq=False)
class SimMember:
    """A user's membership of a guild."""

    user: SimUser
    guild_id: int
    roles: list[int]
    joined_at: dt.datetime
    nick: str | None = None


@dataclass(eq=False)
class SimChannel:
    """A text channel, thread or DM, with its (non-ephemeral) message history."""

    id: int
    type: int
    name: str
    guild_id: int | None
    parent_id: int | None = None
    position: int = 0
    owner_id: int | None = None
    recipient: SimUser | None = None
    messages: list[SimMessage] = field(default_factory=list)
    # threads: minutes of inactivity before Discord archives it (60, 1440, 4320 or 10080)
    auto_archive_duration: int = 1440

    @property
    def is_thread(self) -> bool:
        return self.type in (PUBLIC_THREAD, PRIVATE_THREAD)

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"


@dataclass(eq=False)
class SimGuild:
    """A guild with roles, members and channels (threads included)."""

    id: int
    name: str
    owner_id: int
    roles: dict[int, SimRole] = field(default_factory=dict)
    members: dict[int, SimMember] = field(default_factory=dict)
    channels: list[SimChannel] = field(default_factory=list)

    @property
    def everyone_role(self) -> SimRole:
        return self.roles[self.id]

    def permissions_for(self, user_id: int) -> int:
        """Guild-level permissions (no channel overwrites: the emulator's channels have none)."""
        if user_id == self.owner_id:
            return ALL_PERMISSIONS
        member = self.members.get(user_id)
        if member is None:
            return 0
        perms = self.everyone_role.permissions
        for role_id in member.roles:
            perms |= self.roles[role_id].permissions
        if perms & ADMINISTRATOR:
            return ALL_PERMISSIONS
        return perms

    def channel_by_name(self, name: str) -> SimChannel:
        for channel in self.channels:
            if channel.name == name:
                return channel
        raise KeyError(f"no channel named {name!r} in {self.name}")


@dataclass(frozen=True, eq=False)
class SimAttachment:
    """A file attached to a message or passed as an attachment option; served by the emulator."""

    id: int
    filename: str
    data: bytes
    content_type: str | None
    url: str
    description: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(width, height) for PNG files, read from the IHDR chunk as Discord does for images."""
        if self.data[:8] == b"\x89PNG\r\n\x1a\n" and len(self.data) >= 24:
            width, height = struct.unpack(">II", self.data[16:24])
            return int(width), int(height)
        return None

    @property
    def is_png(self) -> bool:
        return self.image_size is not None

    def text(self, encoding: str = "utf-8") -> str:
        return self.data.decode(encoding)


@dataclass(frozen=True)
class SimButton:
    """A button as currently shown on a message."""

    custom_id: str | None
    label: str | None
    style: int
    disabled: bool
    url: str | None = None


@dataclass(frozen=True)
class MessageRevision:
    """One state of a message: its creation, or the result of an edit."""

    content: str
    embeds: list[dict[str, Any]]
    components: list[dict[str, Any]]
    attachments: tuple[SimAttachment, ...]
    flags: int
    allowed_mentions: dict[str, Any] | None
    # What Discord would resolve as mentions for this content under allowed_mentions:
    # "user:<id>", "role:<id>", "everyone", "replied_user:<id>". Empty means nobody can be pinged.
    mentions: frozenset[str]
    at: dt.datetime
    request_index: int | None

    @property
    def buttons(self) -> list[SimButton]:
        return buttons_of(self.components)


@dataclass(eq=False)
class SimMessage:
    """A message with its full edit history (`revisions[0]` is how it was created)."""

    id: int
    channel: SimChannel
    author: SimUser
    created_at: dt.datetime
    revisions: list[MessageRevision]
    type: int = 0
    webhook_id: int | None = None
    interaction_id: int | None = None
    reference_id: int | None = None
    deleted: bool = False
    # The thread started from this message (its id is the message's id, as on Discord).
    thread: SimChannel | None = None
    # emoji -> ids of the users who reacted with it, in order
    reactions: dict[str, list[int]] = field(default_factory=dict)

    @property
    def current(self) -> MessageRevision:
        return self.revisions[-1]

    @property
    def content(self) -> str:
        return self.current.content

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return self.current.embeds

    @property
    def components(self) -> list[dict[str, Any]]:
        return self.current.components

    @property
    def attachments(self) -> tuple[SimAttachment, ...]:
        return self.current.attachments

    @property
    def flags(self) -> int:
        return self.current.flags

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        """True while this is a deferred response still showing "thinking..."."""
        return bool(self.flags & FLAG_LOADING)

    @property
    def edited_at(self) -> dt.datetime | None:
        return self.revisions[-1].at if len(self.revisions) > 1 else None

    @property
    def contents(self) -> list[str]:
        """Content of every revision in order (how a stream of edits looked)."""
        return [revision.content for revision in self.revisions]

    @property
    def buttons(self) -> list[SimButton]:
        return buttons_of(self.components)

    @property
    def text(self) -> str:
        """Content plus the text of every embed (title, description, fields, footer)."""
        parts = [self.content] if self.content else []
        for embed in self.embeds:
            parts.extend(embed_texts(embed))
        return "\n".join(parts)

    @property
    def mentions(self) -> frozenset[str]:
        """Every mention any revision of this message could have resolved."""
        found: set[str] = set()
        for revision in self.revisions:
            found |= revision.mentions
        return frozenset(found)

    def __repr__(self) -> str:
        flags = []
        if self.ephemeral:
            flags.append("ephemeral")
        if self.loading:
            flags.append("loading")
        if self.deleted:
            flags.append("deleted")
        return (
            f"<SimMessage id={self.id} channel={self.channel.name!r} author={self.author.name!r}"
            f" edits={len(self.revisions) - 1} {' '.join(flags)} content={self.content[:60]!r}>"
        )


def buttons_of(components: list[dict[str, Any]]) -> list[SimButton]:
    return [
        SimButton(
            custom_id=c.get("custom_id"),
            label=c.get("label"),
            style=int(c.get("style", 1)),
            disabled=bool(c.get("disabled", False)),
            url=c.get("url"),
        )
        for c in iter_components(components)
        if c.get("type") == 2
    ]


def iter_components(components: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every component, depth first (action rows and v2 containers included)."""
    for component in components:
        yield component
        for key in ("components", "accessory"):
            child = component.get(key)
            if isinstance(child, list):
                yield from iter_components(child)
            elif isinstance(child, dict):
                yield from iter_components([child])


def embed_texts(embed: dict[str, Any]) -> list[str]:
    parts: list[str] = []
    for key in ("title", "description"):
        if embed.get(key):
            parts.append(str(embed[key]))
    author = embed.get("author") or {}
    if author.get("name"):
        parts.append(str(author["name"]))
    for f in embed.get("fields") or []:
        parts.append(f"{f.get('name', '')}: {f.get('value', '')}")
    footer = embed.get("footer") or {}
    if footer.get("text"):
        parts.append(str(footer["text"]))
    return parts


@dataclass(frozen=True)
class RecordedFile:
    """A file part of a multipart request."""

    field_name: str
    filename: str
    content_type: str | None
    data: bytes


@dataclass(frozen=True)
class RecordedRequest:
    """One REST request the bot made, with the emulator's answer."""

    index: int
    method: str
    path: str
    route: str  # e.g. "PATCH /webhooks/{application_id}/{token}/messages/{message_id}"
    query: dict[str, str]
    json: Any
    files: tuple[RecordedFile, ...]
    status: int
    response: Any
    at: dt.datetime
    interaction_id: int | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error_code(self) -> int | None:
        if isinstance(self.response, dict) and not self.ok:
            code = self.response.get("code")
            return int(code) if code is not None else None
        return None


@dataclass(frozen=True)
class SyncedCommand:
    """An application command as the bot registered it (Discord's stored shape, with ids)."""

    id: int
    name: str
    type: int  # 1 chat input, 2 user context menu, 3 message context menu
    guild_id: int | None
    payload: dict[str, Any]

    @property
    def options(self) -> list[dict[str, Any]]:
        return list(self.payload.get("options") or [])

    @property
    def description(self) -> str:
        return str(self.payload.get("description") or "")
