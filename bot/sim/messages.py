"""Messages in the emulator: created, edited and deleted with every revision kept, and the events
that tell listeners and the bot's gateway about each change.

The REST handlers call this for what the bot sends; the driver for what users post.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.sim.entities import (
    FLAG_COMPONENTS_V2,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    FLAG_SUPPRESS_EMBEDS,
    FLAG_SUPPRESS_NOTIFICATIONS,
    MessageRevision,
    RecordedFile,
    SimAttachment,
    SimChannel,
    SimMessage,
    SimUser,
)
from bot.sim.errors import SimError
from bot.sim.gateway import GatewayHub
from bot.sim.interaction import (
    APPLICATION_COMMAND,
    MESSAGE_COMPONENT,
    InteractionRegistry,
    SimInteraction,
)
from bot.sim.recording import RequestLog
from bot.sim.state import (
    ATTACHMENT_SIZE_LIMIT,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MESSAGES,
    SimState,
)
from bot.sim.validation import (
    MAX_FILES,
    DiscordHTTPError,
    FormErrors,
    require_not_empty,
    resolve_mentions,
    validate_message_body,
)

log = logging.getLogger(__name__)

MESSAGE_TYPE_DEFAULT = 0
MESSAGE_TYPE_REPLY = 19
MESSAGE_TYPE_CHAT_INPUT = 20
MESSAGE_TYPE_CONTEXT_MENU = 23

# Flags a bot may set on a new message (interaction responses may add EPHEMERAL).
_CREATE_FLAGS = FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_COMPONENTS_V2
# Multipart file fields: "files[0]", "files[1]", ... (the number is the attachment's id).
FILE_FIELD = re.compile(r"^files\[(\d+)\]$")


@dataclass(frozen=True)
class MessageEvent:
    """A change the bot made to a message, as delivered to emulator listeners."""

    kind: str  # "create", "edit" or "delete"
    message: SimMessage
    interaction: SimInteraction | None


class MessageService:
    """Creates, edits and deletes messages as Discord would, and renders them as API JSON."""

    def __init__(
        self,
        state: SimState,
        *,
        hub: GatewayHub,
        interactions: InteractionRegistry,
        requests: RequestLog,
    ) -> None:
        self.state = state
        self.clock = state.clock
        self.hub = hub
        self.interactions = interactions
        self.requests = requests
        self._listeners: list[Callable[[MessageEvent], None]] = []

    def add_listener(self, callback: Callable[[MessageEvent], None]) -> None:
        self._listeners.append(callback)

    # -- JSON ----------------------------------------------------------------------------

    def to_json(self, message: SimMessage, *, redact: bool = True) -> dict[str, Any]:
        """The message as the REST API returns it (interaction metadata included).

        ``redact``: under the Message Content rule for the app's portal switches (REST has no
        intents of its own); off for what Discord always shows, e.g. a context menu's target.
        """
        intents = self.state.privileged_intents if redact else None
        return self.state.message_payload(
            message, intents=intents, interaction_meta=self._interaction_meta(message)
        )

    def _interaction_meta(self, message: SimMessage) -> dict[str, Any] | None:
        inter = self.interactions.owner_of(message)
        if inter is None:
            return None
        meta: dict[str, Any] = {
            "id": str(inter.id),
            "type": inter.type,
            "user": self.state.user_payload(inter.user),
            "authorizing_integration_owners": inter.payload.get(
                "authorizing_integration_owners", {}
            ),
        }
        if inter.type == APPLICATION_COMMAND:
            meta["name"] = inter.name.lstrip("/")
            meta["command_type"] = inter.command_type
        if inter.original is not None and message is not inter.original:
            meta["original_response_message_id"] = str(inter.original.id)
        if inter.target_message is not None:
            key = (
                "interacted_message_id" if inter.type == MESSAGE_COMPONENT else "target_message_id"
            )
            meta[key] = str(inter.target_message.id)
        return meta

    # -- creating, editing, deleting -------------------------------------------------------

    async def post_user_message(
        self,
        channel: SimChannel,
        author: SimUser,
        content: str,
        attachments: Sequence[SimAttachment] = (),
        *,
        reply_to: SimMessage | None = None,
        mention_author: bool = True,
    ) -> SimMessage:
        """A message a user writes (no validation: Discord's client already checked it).

        ``reply_to`` makes it a reply (type 19, ``message_reference``); Discord's client pings
        the replied-to author unless ``mention_author`` is turned off.
        """
        if reply_to is not None and (reply_to.channel is not channel or reply_to.deleted):
            raise SimError("a reply must answer a live message in the same channel")
        replied = reply_to.author.id if reply_to is not None and mention_author else None
        revision = MessageRevision(
            content=content,
            embeds=[],
            components=[],
            attachments=tuple(attachments),
            flags=0,
            allowed_mentions=None,
            mentions=resolve_mentions(content, None, replied_user_id=replied),
            at=self.clock.now(),
            request_index=None,
        )
        message = SimMessage(
            id=self.state.ids.next(),
            channel=channel,
            author=author,
            created_at=self.clock.now(),
            revisions=[revision],
            type=MESSAGE_TYPE_REPLY if reply_to is not None else MESSAGE_TYPE_DEFAULT,
            reference_id=reply_to.id if reply_to is not None else None,
        )
        self.state.messages[message.id] = message
        channel.messages.append(message)
        await self._emit("create", message, None)
        return message

    async def create_interaction_message(
        self,
        inter: SimInteraction,
        data: dict[str, Any],
        files: list[RecordedFile],
        *,
        original: bool,
        loading: bool = False,
    ) -> SimMessage:
        """The bot's response (``original``) or a followup to an interaction; ``loading`` makes
        the deferred "thinking..." placeholder."""
        flags = int(data.get("flags") or 0)
        if loading:
            revision = MessageRevision(
                content="",
                embeds=[],
                components=[],
                attachments=(),
                flags=flags,
                allowed_mentions=None,
                mentions=frozenset(),
                at=self.clock.now(),
                request_index=self.requests.next_index,
            )
        else:
            flags &= FLAG_EPHEMERAL | _CREATE_FLAGS
            revision = self._revision(
                data, files, previous=None, channel=inter.channel, flags=flags
            )
            require_not_empty(
                revision.content, revision.embeds, len(revision.attachments), revision.components
            )
        if original and inter.type == APPLICATION_COMMAND:
            chat_input = inter.command_type == 1
            mtype = MESSAGE_TYPE_CHAT_INPUT if chat_input else MESSAGE_TYPE_CONTEXT_MENU
        else:
            mtype = MESSAGE_TYPE_DEFAULT
        message = SimMessage(
            id=self.state.ids.next(),
            channel=inter.channel,
            author=self.state.bot_user,
            created_at=self.clock.now(),
            revisions=[revision],
            type=mtype,
            webhook_id=self.state.application_id,
            interaction_id=inter.id,
        )
        self.state.messages[message.id] = message
        if not message.ephemeral:
            inter.channel.messages.append(message)
        if original:
            inter.original = message
        else:
            inter.followups.append(message)
        await self._emit("create", message, inter)
        return message

    async def create_channel_message(
        self, channel: SimChannel, data: dict[str, Any], files: list[RecordedFile]
    ) -> SimMessage:
        """A message the bot posts in a channel (optionally replying to another)."""
        reference_id: int | None = None
        replied_user_id: int | None = None
        ref = data.get("message_reference")
        if ref:
            referenced = self.state.messages.get(int(ref.get("message_id", 0)))
            if referenced is None or referenced.channel is not channel:
                if ref.get("fail_if_not_exists", True):
                    raise DiscordHTTPError(
                        400,
                        50035,
                        "Invalid Form Body",
                        {
                            "message_reference": {
                                "_errors": [
                                    {
                                        "code": "REPLIES_UNKNOWN_MESSAGE",
                                        "message": "Unknown message",
                                    }
                                ]
                            }
                        },
                    )
            else:
                reference_id = referenced.id
                replied_user_id = referenced.author.id
        flags = int(data.get("flags") or 0) & _CREATE_FLAGS
        revision = self._revision(
            data,
            files,
            previous=None,
            channel=channel,
            flags=flags,
            replied_user_id=replied_user_id,
        )
        require_not_empty(
            revision.content, revision.embeds, len(revision.attachments), revision.components
        )
        message = SimMessage(
            id=self.state.ids.next(),
            channel=channel,
            author=self.state.bot_user,
            created_at=self.clock.now(),
            revisions=[revision],
            type=MESSAGE_TYPE_REPLY if reference_id else MESSAGE_TYPE_DEFAULT,
            reference_id=reference_id,
        )
        self.state.messages[message.id] = message
        channel.messages.append(message)
        await self._emit("create", message, None)
        return message

    async def edit(
        self,
        message: SimMessage,
        data: dict[str, Any],
        files: list[RecordedFile],
        *,
        inter: SimInteraction | None = None,
        finish_loading: bool = False,
    ) -> SimMessage:
        """Add a revision; ``finish_loading`` turns a "thinking..." placeholder into an answer."""
        previous = message.current
        flags = previous.flags
        if finish_loading:
            flags &= ~FLAG_LOADING
        if "flags" in data and data["flags"] is not None:
            # Only SUPPRESS_EMBEDS can be toggled on an existing message.
            flags = (flags & ~FLAG_SUPPRESS_EMBEDS) | (int(data["flags"]) & FLAG_SUPPRESS_EMBEDS)
        revision = self._revision(
            data, files, previous=previous, channel=message.channel, flags=flags
        )
        if not revision.flags & FLAG_LOADING:
            require_not_empty(
                revision.content, revision.embeds, len(revision.attachments), revision.components
            )
        message.revisions.append(revision)
        await self._emit("edit", message, inter)
        return message

    async def delete(self, message: SimMessage, *, inter: SimInteraction | None = None) -> None:
        message.deleted = True
        await self._emit("delete", message, inter)

    def add_reaction(self, message: SimMessage, emoji: str, user: SimUser) -> None:
        """``user`` reacts to ``message`` with ``emoji`` (again is a no-op, as on Discord)."""
        if not emoji or len(emoji) > 32:
            raise DiscordHTTPError(400, 10014, "Unknown Emoji")
        users = message.reactions.setdefault(emoji, [])
        if user.id not in users:
            users.append(user.id)

    # -- revisions -------------------------------------------------------------------------

    def _revision(
        self,
        data: dict[str, Any],
        files: list[RecordedFile],
        *,
        previous: MessageRevision | None,
        channel: SimChannel,
        flags: int,
        replied_user_id: int | None = None,
    ) -> MessageRevision:
        validate_message_body(data)
        content = data["content"] if "content" in data else (previous.content if previous else "")
        embeds = data["embeds"] if "embeds" in data else (previous.embeds if previous else [])
        components = (
            data["components"]
            if "components" in data
            else (previous.components if previous else [])
        )
        attachments = self._attachments(data, files, previous, channel)
        if previous is None or "content" in data:
            allowed = data.get("allowed_mentions")
            mentions = resolve_mentions(content or "", allowed, replied_user_id=replied_user_id)
        else:
            allowed, mentions = previous.allowed_mentions, previous.mentions
        return MessageRevision(
            content=content or "",
            embeds=list(embeds or []),
            components=list(components or []),
            attachments=attachments,
            flags=flags,
            allowed_mentions=allowed,
            mentions=mentions,
            at=self.clock.now(),
            request_index=self.requests.next_index,
        )

    def _attachments(
        self,
        data: dict[str, Any],
        files: list[RecordedFile],
        previous: MessageRevision | None,
        channel: SimChannel,
    ) -> tuple[SimAttachment, ...]:
        """The attachments after this request: kept ones (by id) and new uploads."""
        if len(files) > MAX_FILES:
            raise DiscordHTTPError(
                400,
                50035,
                "Invalid Form Body",
                {
                    "files": {
                        "_errors": [
                            {
                                "code": "BASE_TYPE_MAX_LENGTH",
                                "message": "Must be 10 or fewer in length.",
                            }
                        ]
                    }
                },
            )
        if sum(len(f.data) for f in files) > ATTACHMENT_SIZE_LIMIT:
            raise DiscordHTTPError(413, 40005, "Request entity too large")
        uploads: dict[int, RecordedFile] = {}
        for position, upload in enumerate(files):
            match = FILE_FIELD.match(upload.field_name)
            uploads[int(match.group(1)) if match else position] = upload
        existing = {a.id: a for a in previous.attachments} if previous is not None else {}

        def make(upload: RecordedFile, entry: dict[str, Any]) -> SimAttachment:
            return self.state.make_attachment(
                str(entry.get("filename") or upload.filename),
                upload.data,
                None,  # discord.py labels every part octet-stream; Discord derives the type
                channel_id=channel.id,
                description=entry.get("description"),
            )

        if data.get("attachments") is None:
            kept = list(existing.values())
            return tuple(kept + [make(u, {}) for u in uploads.values()])
        result: list[SimAttachment] = []
        used: set[int] = set()
        errors = FormErrors()
        for i, entry in enumerate(data["attachments"]):
            try:
                attachment_id = int(entry.get("id"))
            except (TypeError, ValueError):
                errors.add(f"attachments.{i}.id", "BASE_TYPE_REQUIRED", "This field is required")
                continue
            if attachment_id in existing:
                result.append(existing[attachment_id])
            elif attachment_id in uploads:
                used.add(attachment_id)
                result.append(make(uploads[attachment_id], entry))
            else:
                errors.add(f"attachments.{i}.id", "ATTACHMENT_NOT_FOUND", "Unknown attachment")
        errors.raise_if_any()
        result.extend(make(u, {}) for index, u in uploads.items() if index not in used)
        return tuple(result)

    # -- events ----------------------------------------------------------------------------

    async def _emit(self, kind: str, message: SimMessage, inter: SimInteraction | None) -> None:
        # Wake waiters on every interaction the message belongs to (e.g. a Stop click edits the
        # /generate response: both interactions see the change).
        owners = {id(i): i for i in (inter, self.interactions.owner_of(message)) if i}
        for owner in owners.values():
            owner.touch()
        event = MessageEvent(kind=kind, message=message, interaction=inter)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("emulator listener failed")
        await self._gateway_event(kind, message)

    async def _gateway_event(self, kind: str, message: SimMessage) -> None:
        if message.ephemeral:
            return  # Discord never sends ephemeral messages over the gateway
        intents = self.hub.intents
        guild_id = message.channel.guild_id
        needed = INTENT_GUILD_MESSAGES if guild_id is not None else INTENT_DIRECT_MESSAGES
        if not intents & needed:
            return
        if kind == "delete":
            data: dict[str, Any] = {"id": str(message.id), "channel_id": str(message.channel.id)}
            if guild_id is not None:
                data["guild_id"] = str(guild_id)
            await self.hub.dispatch("MESSAGE_DELETE", data)
            return
        data = self.state.message_payload(
            message, gateway=True, intents=intents, interaction_meta=self._interaction_meta(message)
        )
        await self.hub.dispatch("MESSAGE_CREATE" if kind == "create" else "MESSAGE_UPDATE", data)
