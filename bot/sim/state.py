"""The emulator's world (users, guilds, channels, messages, commands) and its Discord JSON shapes."""

from __future__ import annotations

import mimetypes
from typing import Any
from urllib.parse import quote

from bot.sim.clock import SimClock, SnowflakeFactory
from bot.sim.entities import (
    ADMINISTRATOR,
    DM,
    EVERYONE_PERMISSIONS,
    FLAG_EPHEMERAL,
    FLAG_HAS_THREAD,
    GUILD_TEXT,
    MANAGE_MESSAGES,
    PUBLIC_THREAD,
    SimAttachment,
    SimChannel,
    SimGuild,
    SimMember,
    SimMessage,
    SimRole,
    SimUser,
    SyncedCommand,
)

# Gateway intents that change what the emulator sends.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15
# Privileged intents: an app gets them only once switched on in the Developer Portal.
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT

ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024  # Discord's default upload limit for a guild


def iso(value: Any) -> str:
    return value.isoformat()


class SimState:
    """All entities of one emulated Discord, and how each renders as API JSON."""

    def __init__(
        self,
        clock: SimClock,
        *,
        token: str,
        application_id: int | None = None,
        privileged_intents: int = PRIVILEGED_INTENTS,
    ) -> None:
        self.clock = clock
        # The privileged intents switched on for the app in the Developer Portal: identifying
        # with another one is refused (close code 4014), and without Message Content the REST
        # API hides message content as the gateway does.
        self.privileged_intents = privileged_intents & PRIVILEGED_INTENTS
        self.ids = SnowflakeFactory(clock)
        self.token = token
        self.base_url = ""  # set once the server listens, e.g. http://127.0.0.1:1234
        self.users: dict[int, SimUser] = {}
        self.guilds: dict[int, SimGuild] = {}
        self.channels: dict[int, SimChannel] = {}
        self.messages: dict[int, SimMessage] = {}
        self.attachments: dict[int, SimAttachment] = {}
        self.global_commands: dict[tuple[str, int], SyncedCommand] = {}
        self.guild_commands: dict[int, dict[tuple[str, int], SyncedCommand]] = {}
        if application_id is not None:
            self.ids.reserve_up_to(application_id)
        self.application_id = application_id or self.ids.next()
        self.bot_user = self.add_user("hfcord", bot=True, user_id=self.application_id)

    # -- building the world -------------------------------------------------------------

    def add_user(self, name: str, *, bot: bool = False, user_id: int | None = None) -> SimUser:
        user = SimUser(id=user_id or self.ids.next(), name=name, global_name=name.title(), bot=bot)
        self.users[user.id] = user
        return user

    def restore(self, users: list[SimUser], guilds: list[SimGuild], dms: list[SimChannel]) -> None:
        """Put entities made in an earlier run back (ids kept); new ids come after theirs."""
        for user in users:
            self.users[user.id] = user
        for guild in guilds:
            self.guilds[guild.id] = guild
            for channel in guild.channels:
                self.channels[channel.id] = channel
        for channel in dms:
            self.channels[channel.id] = channel
        ids = [u.id for u in users] + [g.id for g in guilds] + [c.id for c in dms]
        ids += [r for g in guilds for r in g.roles] + [c.id for g in guilds for c in g.channels]
        self.ids.reserve_up_to(max(ids, default=0))

    def add_guild(self, name: str, owner: SimUser) -> SimGuild:
        guild = SimGuild(id=self.ids.next(), name=name, owner_id=owner.id)
        guild.roles[guild.id] = SimRole(
            id=guild.id, guild_id=guild.id, name="@everyone", permissions=EVERYONE_PERMISSIONS
        )
        self.guilds[guild.id] = guild
        self.add_member(guild, owner)
        bot_role = self.add_role(guild, self.bot_user.name, permissions=0, managed=True)
        self.add_member(guild, self.bot_user, roles=[bot_role])
        return guild

    def add_role(
        self,
        guild: SimGuild,
        name: str,
        *,
        permissions: int = 0,
        managed: bool = False,
        mentionable: bool = True,
    ) -> SimRole:
        role = SimRole(
            id=self.ids.next(),
            guild_id=guild.id,
            name=name,
            permissions=permissions,
            position=len(guild.roles),
            managed=managed,
            mentionable=mentionable,
        )
        guild.roles[role.id] = role
        return role

    def add_member(
        self, guild: SimGuild, user: SimUser, *, roles: list[SimRole] | None = None
    ) -> SimMember:
        member = SimMember(
            user=user,
            guild_id=guild.id,
            roles=[r.id for r in roles or []],
            joined_at=self.clock.now(),
        )
        guild.members[user.id] = member
        return member

    def add_channel(self, guild: SimGuild, name: str) -> SimChannel:
        channel = SimChannel(
            id=self.ids.next(),
            type=GUILD_TEXT,
            name=name,
            guild_id=guild.id,
            position=len(guild.channels),
        )
        guild.channels.append(channel)
        self.channels[channel.id] = channel
        return channel

    def add_thread(
        self,
        parent: SimChannel,
        name: str,
        owner: SimUser,
        *,
        thread_id: int | None = None,
        type: int = PUBLIC_THREAD,
        auto_archive_duration: int = 1440,
    ) -> SimChannel:
        """A thread of ``parent``; ``thread_id`` is the starter message's id for a thread
        started from a message (as on Discord), else a new id."""
        if parent.guild_id is None:
            raise ValueError("threads live in guild channels")
        thread = SimChannel(
            id=thread_id or self.ids.next(),
            type=type,
            name=name,
            guild_id=parent.guild_id,
            parent_id=parent.id,
            owner_id=owner.id,
            auto_archive_duration=auto_archive_duration,
        )
        self.guilds[parent.guild_id].channels.append(thread)
        self.channels[thread.id] = thread
        return thread

    def dm_channel(self, user: SimUser) -> SimChannel:
        for channel in self.channels.values():
            if channel.type == DM and channel.recipient is user:
                return channel
        channel = SimChannel(
            id=self.ids.next(), type=DM, name=f"dm-{user.name}", guild_id=None, recipient=user
        )
        self.channels[channel.id] = channel
        return channel

    def make_attachment(
        self,
        filename: str,
        data: bytes,
        content_type: str | None = None,
        *,
        channel_id: int = 0,
        description: str | None = None,
    ) -> SimAttachment:
        attachment_id = self.ids.next()
        if content_type is None:
            content_type = mimetypes.guess_type(filename)[0]
        url = f"{self.base_url}/attachments/{channel_id}/{attachment_id}/{quote(filename)}"
        attachment = SimAttachment(
            id=attachment_id,
            filename=filename,
            data=data,
            content_type=content_type,
            url=url,
            description=description,
        )
        self.attachments[attachment_id] = attachment
        return attachment

    # -- lookups -----------------------------------------------------------------------

    def guild_of(self, channel: SimChannel) -> SimGuild | None:
        return self.guilds.get(channel.guild_id) if channel.guild_id is not None else None

    def bot_permissions(self, guild: SimGuild | None) -> int:
        if guild is None:
            return EVERYONE_PERMISSIONS
        return guild.permissions_for(self.bot_user.id)

    def commands_for(self, guild_id: int | None) -> list[SyncedCommand]:
        """Commands visible in a guild (guild commands first, then global), or global only."""
        found = list(self.guild_commands.get(guild_id, {}).values()) if guild_id else []
        names = {(c.name, c.type) for c in found}
        found.extend(c for key, c in self.global_commands.items() if key not in names)
        return found

    # -- JSON shapes -------------------------------------------------------------------

    def user_payload(self, user: SimUser) -> dict[str, Any]:
        return {
            "id": str(user.id),
            "username": user.name,
            "discriminator": "0",
            "global_name": user.global_name,
            "avatar": None,
            "bot": user.bot,
            "system": False,
            "public_flags": 0,
            "flags": 0,
        }

    def role_payload(self, role: SimRole) -> dict[str, Any]:
        return {
            "id": str(role.id),
            "name": role.name,
            "color": role.color,
            "colors": {
                "primary_color": role.color,
                "secondary_color": None,
                "tertiary_color": None,
            },
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": role.position,
            "permissions": str(role.permissions),
            "managed": role.managed,
            "mentionable": role.mentionable,
            "flags": 0,
            "tags": {"bot_id": str(self.bot_user.id)} if role.managed else {},
        }

    def member_payload(
        self,
        guild: SimGuild,
        member: SimMember,
        *,
        with_user: bool = True,
        with_permissions: bool = False,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "nick": member.nick,
            "avatar": None,
            "roles": [str(r) for r in member.roles],
            "joined_at": iso(member.joined_at),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_user:
            payload["user"] = self.user_payload(member.user)
        if with_permissions:
            payload["permissions"] = str(guild.permissions_for(member.user.id))
        return payload

    def channel_payload(self, channel: SimChannel) -> dict[str, Any]:
        if channel.type == DM:
            assert channel.recipient is not None
            return {
                "id": str(channel.id),
                "type": DM,
                "last_message_id": None,
                "recipients": [self.user_payload(channel.recipient)],
                "flags": 0,
            }
        payload: dict[str, Any] = {
            "id": str(channel.id),
            "type": channel.type,
            "guild_id": str(channel.guild_id),
            "name": channel.name,
            "position": channel.position,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": str(channel.parent_id) if channel.parent_id else None,
            "last_message_id": str(channel.messages[-1].id) if channel.messages else None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        if channel.is_thread:
            payload.update(
                owner_id=str(channel.owner_id),
                message_count=len(channel.messages),
                member_count=1,
                thread_metadata={
                    "archived": False,
                    "auto_archive_duration": channel.auto_archive_duration,
                    "archive_timestamp": iso(self.clock.now()),
                    "locked": False,
                    "create_timestamp": iso(self.clock.now()),
                },
            )
        else:
            payload["topic"] = None
        return payload

    def guild_payload(self, guild: SimGuild, *, intents: int) -> dict[str, Any]:
        """GUILD_CREATE data. Without the members intent Discord sends only the bot's member."""
        if intents & INTENT_GUILD_MEMBERS:
            members = list(guild.members.values())
        else:
            members = [guild.members[self.bot_user.id]]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "features": [],
            "emojis": [],
            "stickers": [],
            "roles": [self.role_payload(r) for r in guild.roles.values()],
            "joined_at": iso(guild.members[self.bot_user.id].joined_at),
            "large": False,
            "unavailable": False,
            "member_count": len(guild.members),
            "members": [self.member_payload(guild, m) for m in members],
            "channels": [self.channel_payload(c) for c in guild.channels if not c.is_thread],
            "threads": [self.channel_payload(c) for c in guild.channels if c.is_thread],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "application_id": None,
            "max_members": 500000,
        }

    def attachment_payload(self, attachment: SimAttachment) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": str(attachment.id),
            "filename": attachment.filename,
            "size": attachment.size,
            "url": attachment.url,
            "proxy_url": attachment.url,
            "content_type": attachment.content_type,
            "flags": 0,
        }
        if attachment.description:
            payload["description"] = attachment.description
        dims = attachment.image_size
        if dims is not None:
            payload["width"], payload["height"] = dims
        return payload

    def content_visible(self, message: SimMessage, intents: int | None) -> bool:
        """Whether an app seeing ``message`` with ``intents`` gets its content (Discord's
        Message Content rule; ``intents`` None: always, as for a context menu's target).

        Without the intent, content, embeds, attachments and components are empty, except in
        DMs, in the app's own messages and in messages that mention it (a reply that pings it
        mentions it). A thread the app created is no exception.
        """
        if intents is None or intents & INTENT_MESSAGE_CONTENT:
            return True
        if message.channel.guild_id is None or message.author is self.bot_user:
            return True
        mentions = message.current.mentions
        bot = self.bot_user.id
        return f"user:{bot}" in mentions or f"replied_user:{bot}" in mentions

    def message_payload(
        self,
        message: SimMessage,
        *,
        gateway: bool = False,
        intents: int | None = None,
        interaction_meta: dict[str, Any] | None = None,
        with_reference: bool = True,
    ) -> dict[str, Any]:
        """The message as the API shows it to the bot: over the gateway (``gateway``) or REST,
        for an app with ``intents`` (None: everything, as for a context menu's target).

        A reply carries ``message_reference`` and, one level deep, ``referenced_message``
        (null once that message was deleted), under the same content rule.
        """
        revision = message.current
        channel = message.channel
        guild = self.guild_of(channel)
        hide = not self.content_visible(message, intents)
        mention_users = [
            int(m.split(":")[1])
            for m in revision.mentions
            if m.startswith(("user:", "replied_user:"))
        ]
        mentions = []
        for uid in dict.fromkeys(mention_users):
            user = self.users.get(uid)
            if user is None:
                continue
            entry = self.user_payload(user)
            if gateway and guild is not None and uid in guild.members:
                entry["member"] = self.member_payload(guild, guild.members[uid], with_user=False)
            mentions.append(entry)
        payload: dict[str, Any] = {
            "id": str(message.id),
            "channel_id": str(channel.id),
            "author": self.user_payload(message.author),
            "content": "" if hide else revision.content,
            "timestamp": iso(message.created_at),
            "edited_timestamp": iso(message.edited_at) if message.edited_at else None,
            "tts": False,
            "mention_everyone": "everyone" in revision.mentions,
            "mentions": mentions,
            "mention_roles": [m.split(":")[1] for m in revision.mentions if m.startswith("role:")],
            "attachments": []
            if hide
            else [self.attachment_payload(a) for a in revision.attachments],
            "embeds": [] if hide else revision.embeds,
            "components": [] if hide else revision.components,
            "pinned": False,
            "type": message.type,
            "flags": revision.flags | (FLAG_HAS_THREAD if message.thread is not None else 0),
        }
        if message.webhook_id is not None:
            payload["webhook_id"] = str(message.webhook_id)
            payload["application_id"] = str(self.application_id)
        if interaction_meta is not None:
            payload["interaction_metadata"] = interaction_meta
        if message.reference_id is not None:
            payload["message_reference"] = {
                "type": 0,
                "message_id": str(message.reference_id),
                "channel_id": str(channel.id),
                "guild_id": str(channel.guild_id) if channel.guild_id else None,
            }
            if with_reference:
                parent = self.messages.get(message.reference_id)
                payload["referenced_message"] = (
                    self.message_payload(
                        parent, gateway=gateway, intents=intents, with_reference=False
                    )
                    if parent is not None and not parent.deleted
                    else None
                )
        if message.thread is not None:
            payload["thread"] = self.channel_payload(message.thread)
        if gateway and guild is not None:
            payload["guild_id"] = str(guild.id)
            member = guild.members.get(message.author.id)
            if member is not None and message.webhook_id is None:
                payload["member"] = self.member_payload(guild, member, with_user=False)
        return payload


def can_manage_messages(guild: SimGuild | None, user_id: int) -> bool:
    if guild is None:
        return False
    perms = guild.permissions_for(user_id)
    return bool(perms & (MANAGE_MESSAGES | ADMINISTRATOR))


def is_ephemeral(flags: int) -> bool:
    return bool(flags & FLAG_EPHEMERAL)
