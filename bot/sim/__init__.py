"""A loopback Discord emulator: REST + gateway on 127.0.0.1 for end-to-end tests and the playground."""

from __future__ import annotations

from bot.sim.clock import SimClock
from bot.sim.emulator import DiscordEmulator, MessageEvent
from bot.sim.errors import (
    CommandNotFound,
    CommandNotVisible,
    ComponentError,
    InteractionFailed,
    InteractionTimeout,
    OptionError,
    SimError,
)
from bot.sim.interaction import SimInteraction
from bot.sim.models import (
    MessageRevision,
    RecordedFile,
    RecordedRequest,
    SimAttachment,
    SimButton,
    SimChannel,
    SimGuild,
    SimMessage,
    SimRole,
    SimUser,
    SyncedCommand,
)
from bot.sim.ratelimit import RateLimitPolicy

__all__ = [
    "CommandNotFound",
    "CommandNotVisible",
    "ComponentError",
    "DiscordEmulator",
    "InteractionFailed",
    "InteractionTimeout",
    "MessageEvent",
    "MessageRevision",
    "OptionError",
    "RateLimitPolicy",
    "RecordedFile",
    "RecordedRequest",
    "SimAttachment",
    "SimButton",
    "SimChannel",
    "SimClock",
    "SimError",
    "SimGuild",
    "SimInteraction",
    "SimMessage",
    "SimRole",
    "SimUser",
    "SyncedCommand",
]
