"""/ner and the "Find entities" message action."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import HFCordBot
from bot.inputs import bounded_text, message_text, note_if_loading, registry_of
from bot.reply import defer, send
from bot.text import code_span, plain
from models.results import Entity, NERResult
from models.specs import Task

_TYPES = {"PER": "person", "ORG": "organization", "LOC": "location", "MISC": "misc"}


def mark_entities(text: str, entities: tuple[Entity, ...]) -> str:
    """`text` with each entity in bold, followed by its type: **Paris** `LOC`."""
    out: list[str] = []
    pos = 0
    for entity in sorted(entities, key=lambda e: e.start):
        if entity.start < pos:  # overlapping spans: keep the first
            continue
        out.append(plain(text[pos : entity.start]))
        span = plain(text[entity.start : entity.end])
        # Entity types are the model's label names: a promoted model's can be anything.
        out.append(f"**{span}** {code_span(entity.entity_group)}")
        pos = entity.end
    out.append(plain(text[pos:]))
    return "".join(out)


def format_entities(text: str, result: NERResult) -> str:
    if not result.entities:
        return "I found no named entities (people, organizations, places, …) in that text."
    lines = [mark_entities(text, result.entities), "", "**Entities**"]
    for entity in result.entities:
        kind = plain(_TYPES.get(entity.entity_group, entity.entity_group.lower()))
        word = plain(text[entity.start : entity.end] or entity.word)
        lines.append(f"• {word}: {kind} ({entity.score:.1%})")
    return "\n".join(lines)


class NamedEntities(commands.Cog):
    def __init__(self, bot: HFCordBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name="Find entities", callback=self.find_in_message)
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    async def _reply(self, interaction: discord.Interaction[HFCordBot], text: str) -> None:
        registry = registry_of(self.bot)
        await note_if_loading(interaction, registry, Task.NER)
        result = await registry.ner(text, guild_id=interaction.guild_id)
        await send(interaction, format_entities(text, result))

    @app_commands.command(name="ner")
    @app_commands.describe(text="The text to search for people, organizations and places")
    async def ner(self, interaction: discord.Interaction[HFCordBot], text: str) -> None:
        """Find people, organizations, places and other names in a text."""
        with self.bot.usage.hold(interaction.user.id):
            await defer(interaction)
            await self._reply(interaction, bounded_text(text, self.bot.settings.max_input_chars))

    async def find_in_message(
        self, interaction: discord.Interaction[HFCordBot], message: discord.Message
    ) -> None:
        with self.bot.usage.hold(interaction.user.id):
            await defer(interaction)
            text = message_text(message, self.bot.settings.max_input_chars)
            await self._reply(interaction, text)


async def setup(bot: HFCordBot) -> None:
    await bot.add_cog(NamedEntities(bot))
