"""/persona set, show and clear: the persona (system prompt) chats in a channel start with.

A thread without a persona of its own uses its parent channel's; a chat opened with
``/chat persona:`` has its own. Changing a persona needs the Manage Channels permission (or a
bot admin listed in ``HFCORD_ADMIN_IDS``), checked here on every call.
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import HFCordBot
from bot.conversations import EffectivePersona
from bot.errors import UserFacingError
from bot.inputs import bounded_text
from bot.reply import send
from bot.text import clip, plain, quote

SOURCES = {
    "own": "this channel's own",
    "parent": "inherited from the parent channel",
    "default": "the bot's default",
}


def describe(persona: EffectivePersona, *, full: bool = False) -> str:
    """Where the persona comes from, who set it, and its text."""
    line = f"Persona: {SOURCES[persona.source]}"
    if persona.persona is not None:
        when = discord.utils.format_dt(persona.persona.set_at, "R")
        line += f", set by <@{persona.persona.set_by}> {when}"
    text = persona.text if full else clip(persona.text, 600)
    return f"{line}\n{quote(plain(text))}"


def _require_manage_channels(interaction: discord.Interaction[HFCordBot]) -> None:
    if interaction.user.id in interaction.client.settings.admin_ids:
        return
    if not interaction.permissions.manage_channels:
        raise UserFacingError(
            "Changing a channel's persona needs the Manage Channels permission in it."
        )


def _parent_id(interaction: discord.Interaction[HFCordBot]) -> int | None:
    channel = interaction.channel
    return channel.parent_id if isinstance(channel, discord.Thread) else None


class Personas(commands.Cog):
    persona = app_commands.Group(
        name="persona",
        description="How the model acts in this channel's chats (its system prompt)",
        guild_only=True,
    )

    def __init__(self, bot: HFCordBot) -> None:
        self.bot = bot
        self.records = bot.conversations.records

    @persona.command(name="set")
    @app_commands.describe(text="How the model should act, e.g. 'You are a pirate. Be brief.'")
    async def set_(self, interaction: discord.Interaction[HFCordBot], text: str) -> None:
        """Set the persona chats in this channel start with (Manage Channels)."""
        _require_manage_channels(interaction)
        text = bounded_text(text, self.bot.settings.max_input_chars, what="persona")
        assert interaction.channel_id is not None
        await self.records.set_persona(
            channel_id=interaction.channel_id,
            guild_id=interaction.guild_id,
            text=text,
            user_id=interaction.user.id,
        )
        await send(
            interaction,
            "Persona set; new answers in this channel and its threads use it:\n"
            + quote(plain(clip(text, 600))),
        )

    @persona.command(name="show")
    async def show(self, interaction: discord.Interaction[HFCordBot]) -> None:
        """Show the persona chats in this channel use."""
        assert interaction.channel_id is not None
        persona = await self.records.effective_persona(
            interaction.channel_id, _parent_id(interaction)
        )
        await send(interaction, describe(persona, full=True), ephemeral=True)

    @persona.command(name="clear")
    async def clear(self, interaction: discord.Interaction[HFCordBot]) -> None:
        """Remove this channel's own persona (Manage Channels)."""
        _require_manage_channels(interaction)
        assert interaction.channel_id is not None
        removed = await self.records.clear_persona(
            channel_id=interaction.channel_id,
            guild_id=interaction.guild_id,
            user_id=interaction.user.id,
        )
        if removed is None:
            raise UserFacingError("This channel has no persona of its own to clear.")
        now = await self.records.effective_persona(interaction.channel_id, _parent_id(interaction))
        await send(interaction, f"Persona cleared. Chats here now use {SOURCES[now.source]}.")


async def setup(bot: HFCordBot) -> None:
    await bot.add_cog(Personas(bot))
