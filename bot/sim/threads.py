"""Threads in the emulator: started from a message or without one, as Discord starts them.

A thread started from a message has that message's id, and the message then shows it; one
started without a message gets a new id (public or, the API's default, private). Either way the
bot gets THREAD_CREATE (``newly_created``) when it has the GUILDS intent. Discord's rules: only
text channels hold threads (not threads, not DMs), a message starts at most one thread, names
are 1 to 100 characters, the creator needs Create Public (or Private) Threads.
"""

from __future__ import annotations

from typing import Any

from bot.sim.entities import (
    CREATE_PRIVATE_THREADS,
    CREATE_PUBLIC_THREADS,
    GUILD_TEXT,
    PRIVATE_THREAD,
    PUBLIC_THREAD,
    SimChannel,
    SimMessage,
    SimUser,
)
from bot.sim.gateway import GatewayHub
from bot.sim.state import INTENT_GUILDS, SimState
from bot.sim.validation import DiscordHTTPError, FormErrors

ARCHIVE_DURATIONS = frozenset({60, 1440, 4320, 10080})  # minutes
MAX_THREAD_NAME = 100


class ThreadService:
    """Starts threads for the bot (REST) and for users (the driver), and announces them."""

    def __init__(self, state: SimState, *, hub: GatewayHub) -> None:
        self.state = state
        self.hub = hub

    async def start_from_message(
        self, channel: SimChannel, message: SimMessage, data: dict[str, Any], creator: SimUser
    ) -> SimChannel:
        """A public thread on ``message`` (POST /channels/{c}/messages/{m}/threads)."""
        self._check_parent(channel)
        if message.channel is not channel or message.deleted:
            raise DiscordHTTPError(404, 10008, "Unknown Message")
        if message.thread is not None:
            raise DiscordHTTPError(
                400, 160004, "A thread has already been created for this message"
            )
        name, archive = _name_and_archive(data)
        self._check_permission(channel, creator, CREATE_PUBLIC_THREADS)
        thread = self.state.add_thread(
            channel,
            name,
            creator,
            thread_id=message.id,
            type=PUBLIC_THREAD,
            auto_archive_duration=archive,
        )
        message.thread = thread
        await self._announce(thread)
        return thread

    async def start_without_message(
        self, channel: SimChannel, data: dict[str, Any], creator: SimUser
    ) -> SimChannel:
        """A thread with no starter message (POST /channels/{c}/threads); private unless
        ``type`` is 11, as in Discord's API."""
        self._check_parent(channel)
        kind = int(data.get("type") or PRIVATE_THREAD)
        if kind not in (PUBLIC_THREAD, PRIVATE_THREAD):
            errors = FormErrors()
            errors.add("type", "BASE_TYPE_CHOICES", "Value must be one of {11, 12}.")
            errors.raise_if_any()
        name, archive = _name_and_archive(data)
        needed = CREATE_PUBLIC_THREADS if kind == PUBLIC_THREAD else CREATE_PRIVATE_THREADS
        self._check_permission(channel, creator, needed)
        thread = self.state.add_thread(
            channel, name, creator, type=kind, auto_archive_duration=archive
        )
        await self._announce(thread)
        return thread

    def _check_parent(self, channel: SimChannel) -> None:
        if channel.type != GUILD_TEXT:
            raise DiscordHTTPError(400, 50024, "Cannot execute action on this channel type")

    def _check_permission(self, channel: SimChannel, creator: SimUser, needed: int) -> None:
        guild = self.state.guild_of(channel)
        assert guild is not None  # text channels live in guilds
        if not guild.permissions_for(creator.id) & needed:
            raise DiscordHTTPError(403, 50013, "Missing Permissions")

    async def _announce(self, thread: SimChannel) -> None:
        if self.hub.intents & INTENT_GUILDS:
            data = self.state.channel_payload(thread) | {"newly_created": True}
            await self.hub.dispatch("THREAD_CREATE", data)


def _name_and_archive(data: dict[str, Any]) -> tuple[str, int]:
    errors = FormErrors()
    name = data.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_THREAD_NAME:
        errors.add(
            "name", "BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {MAX_THREAD_NAME} in length."
        )
    archive = data.get("auto_archive_duration")
    if archive is not None and archive not in ARCHIVE_DURATIONS:
        errors.add(
            "auto_archive_duration",
            "BASE_TYPE_CHOICES",
            f"Value must be one of {sorted(ARCHIVE_DURATIONS)}.",
        )
    errors.raise_if_any()
    assert isinstance(name, str)
    return name.strip(), int(archive or 1440)
