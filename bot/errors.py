"""User-facing errors and the one command-tree error handler."""

from __future__ import annotations

import logging
import math
import secrets
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.reply import send_error

if TYPE_CHECKING:
    from bot.client import HFCordBot

log = logging.getLogger(__name__)


class UserFacingError(Exception):
    """An error whose message is a sentence for the user (shown ephemerally)."""


class UserCheckFailure(app_commands.CheckFailure):
    """A check that failed with a sentence telling the user why."""


def _model_error_type() -> type[Exception] | None:
    # models/ is optional at import time of bot/ (bot check works without torch installed).
    try:
        from models.errors import ModelError
    except ImportError:  # pragma: no cover - models is part of the same distribution
        return None
    return ModelError


def describe_error(error: BaseException) -> tuple[str, bool]:
    """The sentence a user sees for `error`, and whether it is unexpected (log a traceback)."""
    original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
    if isinstance(original, app_commands.TransformerError):
        return (
            f"The value given for `{original.value}` isn't valid here; check the option and try again.",
            False,
        )
    model_error = _model_error_type()
    if isinstance(original, UserFacingError) or (
        model_error is not None and isinstance(original, model_error)
    ):
        return str(original), False
    if isinstance(original, app_commands.CommandOnCooldown):
        seconds = max(1, math.ceil(original.retry_after))
        return f"You're going a little fast: try again in {seconds} s.", False
    if isinstance(original, app_commands.NoPrivateMessage):
        return "This command only works in a server, not in direct messages.", False
    if isinstance(original, app_commands.MissingPermissions):
        needed = ", ".join(p.replace("_", " ") for p in original.missing_permissions)
        return f"You need the {needed} permission to use this command.", False
    if isinstance(original, app_commands.BotMissingPermissions):
        needed = ", ".join(p.replace("_", " ") for p in original.missing_permissions)
        return f"I need the {needed} permission in this channel to do that.", False
    if isinstance(original, UserCheckFailure):
        return str(original), False
    if isinstance(original, app_commands.CheckFailure):
        return "You can't use this command here.", False
    if isinstance(original, (app_commands.CommandNotFound, app_commands.CommandSignatureMismatch)):
        return (
            "This command changed since Discord last saw it; try again in a minute.",
            False,
        )
    return "", True


class HFCordTree(app_commands.CommandTree["HFCordBot"]):
    """A command tree whose errors become plain sentences for the user."""

    async def on_error(
        self, interaction: discord.Interaction[HFCordBot], error: app_commands.AppCommandError
    ) -> None:
        await report_error(interaction, error)


async def report_error(interaction: discord.Interaction, error: BaseException) -> None:
    """Log `error` and tell the user what happened, privately; never raises."""
    text, unexpected = describe_error(error)
    if unexpected:
        error_id = secrets.token_hex(4)
        command = interaction.command.qualified_name if interaction.command else "?"
        log.error(
            "error %s in command %r (user %s, guild %s)",
            error_id,
            command,
            interaction.user.id,
            interaction.guild_id,
            exc_info=error,
        )
        text = (
            f"Something went wrong on my side (error id `{error_id}`). "
            "Try again; if it keeps happening, give this id to the bot's admin."
        )
    try:
        await send_error(interaction, text)
    except discord.HTTPException as exc:
        log.warning("could not tell user %s about an error: %s", interaction.user.id, exc)
