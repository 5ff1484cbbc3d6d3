"""Permission checks, enforced in code (Discord's default_permissions is a hint).

Rates are not checks: every model request goes through the bot's usage limiter (bot/usage.py),
which also counts requests in flight and is reachable from event handlers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import discord
from discord import app_commands

from bot.errors import UserCheckFailure

if TYPE_CHECKING:
    from bot.client import HFCordBot

T = TypeVar("T")


class NotAdmin(UserCheckFailure):
    """The user is not a server administrator nor a configured admin."""


def is_admin(interaction: discord.Interaction[HFCordBot]) -> bool:
    """Administrator permission in this server, or listed in HFCORD_ADMIN_IDS."""
    if interaction.user.id in interaction.client.settings.admin_ids:
        return True
    user = interaction.user
    return isinstance(user, discord.Member) and user.guild_permissions.administrator


async def _admin_predicate(interaction: discord.Interaction[HFCordBot]) -> bool:
    if interaction.guild_id is None:
        raise app_commands.NoPrivateMessage()
    if not is_admin(interaction):
        raise NotAdmin(
            "Only server administrators (or the bot's configured admins) can use this command."
        )
    return True


def admin_only() -> Callable[[T], T]:
    """Guild only; Administrator permission or a configured admin id. Checked on every call."""
    return app_commands.check(_admin_predicate)
