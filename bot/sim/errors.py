"""Errors raised by the emulator's driver API (what a Discord client would refuse, or a test timeout)."""

from __future__ import annotations


class SimError(Exception):
    """Base class for driver-side errors of the emulator."""


class CommandNotFound(SimError):
    """No synced application command matches the name the driver asked for."""


class CommandNotVisible(SimError):
    """Discord's client would not offer this command to this user here (permissions or context)."""


class OptionError(SimError):
    """Option values the Discord client would not let a user submit."""


class ComponentError(SimError):
    """The message has no enabled component with that custom_id (nothing to click)."""


class InteractionFailed(SimError):
    """The bot did not acknowledge the interaction within Discord's deadline."""


class InteractionTimeout(SimError):
    """The interaction did not reach the awaited state in time."""
