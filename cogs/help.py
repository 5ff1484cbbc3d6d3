"""/help: every command with one line each."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import HFCordBot
from bot.reply import send


def command_lines(tree: app_commands.CommandTree) -> list[str]:
    """One line per slash command, subcommand and message action, sorted."""
    lines: list[str] = []
    menus: list[str] = []
    for command in tree.get_commands():
        if isinstance(command, app_commands.ContextMenu):
            menus.append(f"• **{command.name}**: right-click a message → Apps")
        elif isinstance(command, app_commands.Group):
            for sub in command.walk_commands():
                if isinstance(sub, app_commands.Command):
                    lines.append(f"`/{sub.qualified_name}`: {sub.description}")
        else:
            lines.append(f"`/{command.name}`: {command.description}")
    return sorted(lines) + sorted(menus)


class Help(commands.Cog):
    def __init__(self, bot: HFCordBot) -> None:
        self.bot = bot

    @app_commands.command(name="help")
    async def help(self, interaction: discord.Interaction[HFCordBot]) -> None:
        """What this bot can do, one line per command."""
        body = "\n".join(command_lines(self.bot.tree))
        await send(interaction, f"**hfcord commands**\n{body}", ephemeral=True)


async def setup(bot: HFCordBot) -> None:
    await bot.add_cog(Help(bot))
