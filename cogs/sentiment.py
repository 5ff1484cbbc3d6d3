"""/sentiment and the "Analyze sentiment" message action."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import HFCordBot
from bot.inputs import bounded_text, message_text, note_if_loading, registry_of
from bot.reply import defer, send
from bot.text import clip, plain, quote
from models.results import ClassificationResult
from models.specs import Task

_EMOJI = {"POSITIVE": "🙂", "NEGATIVE": "🙁", "NEUTRAL": "😐"}


def format_sentiment(text: str, result: ClassificationResult) -> str:
    # Labels come from the model's config: a promoted model's can be anything.
    label = result.label.upper()
    lines = [f"{_EMOJI.get(label, '🏷️')} **{plain(result.label)}** ({result.score:.1%} confident)"]
    others = [s for s in result.scores if s.label != result.label]
    if others:
        lines[0] += " · " + ", ".join(f"{plain(s.label)} {s.score:.1%}" for s in others)
    lines.append(quote(plain(clip(text, 300))))
    return "\n".join(lines)


class Sentiment(commands.Cog):
    def __init__(self, bot: HFCordBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(
            name="Analyze sentiment", callback=self.analyze_message
        )
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    async def _reply(self, interaction: discord.Interaction[HFCordBot], text: str) -> None:
        registry = registry_of(self.bot)
        await note_if_loading(interaction, registry, Task.SENTIMENT)
        result = await registry.classify(text, guild_id=interaction.guild_id, top_k=2)
        await send(interaction, format_sentiment(text, result))

    @app_commands.command(name="sentiment")
    @app_commands.describe(text="The text to analyze")
    async def sentiment(self, interaction: discord.Interaction[HFCordBot], text: str) -> None:
        """Is this text positive or negative?"""
        with self.bot.usage.hold(interaction.user.id):
            await defer(interaction)
            await self._reply(interaction, bounded_text(text, self.bot.settings.max_input_chars))

    async def analyze_message(
        self, interaction: discord.Interaction[HFCordBot], message: discord.Message
    ) -> None:
        with self.bot.usage.hold(interaction.user.id):
            await defer(interaction)
            text = message_text(message, self.bot.settings.max_input_chars)
            await self._reply(interaction, text)


async def setup(bot: HFCordBot) -> None:
    await bot.add_cog(Sentiment(bot))
