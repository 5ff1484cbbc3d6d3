"""Bounds on what users type, with errors that say what to do."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.errors import UserFacingError

if TYPE_CHECKING:
    import discord

    from bot.client import HFCordBot
    from models.registry import ModelRegistry
    from models.specs import Task


def bounded_text(text: str | None, limit: int, *, what: str = "text") -> str:
    """`text` stripped; refused when empty or longer than `limit` characters."""
    text = (text or "").strip()
    if not text:
        raise UserFacingError(f"The {what} is empty; give me something to work with.")
    if len(text) > limit:
        raise UserFacingError(
            f"The {what} is {len(text):,} characters long; the limit is {limit:,}. "
            "Shorten it and try again."
        )
    return text


def message_text(message: discord.Message, limit: int) -> str:
    """The text of a message targeted by a context menu."""
    if not message.content.strip():
        raise UserFacingError("That message has no text to analyze (only attachments or embeds).")
    return bounded_text(message.content, limit, what="message")


def registry_of(bot: HFCordBot) -> ModelRegistry:
    if bot.registry is None:
        raise UserFacingError("Models are switched off on this bot; ask its admin.")
    return bot.registry


def loading_note(registry: ModelRegistry, task: Task, guild_id: int | None) -> str | None:
    """A sentence for the user when the model for `task` is not loaded yet, else None."""
    from bot.text import code_span

    status = registry.status(task, guild_id)
    if status.state == "ready":
        return None
    name = code_span(status.name)
    return f"⏳ Loading the {task} model {name}; the first request can take a minute…"


async def note_if_loading(
    interaction: discord.Interaction, registry: ModelRegistry, task: Task
) -> None:
    """Tell the user a model is loading instead of leaving them on "thinking…"."""
    from bot.reply import show_progress

    note = loading_note(registry, task, interaction.guild_id)
    if note is not None:
        await show_progress(interaction, note)
