"""Test-only commands that exercise the bot's foundation (reply helper, error handler, checks).

Loaded into the real bot next to its real cogs by the e2e tests that need them.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import admin_only
from bot.client import HFCordBot
from bot.errors import UserFacingError
from bot.reply import defer, send


class Probes(commands.Cog):
    def __init__(self, bot: HFCordBot) -> None:
        self.bot = bot
        self.late_errors: list[discord.HTTPException] = []

    @app_commands.command(
        name="probe_echo", description="Defer, then echo through the reply helper"
    )
    async def echo(
        self,
        interaction: discord.Interaction[HFCordBot],
        text: str,
        repeat: app_commands.Range[int, 1, 50] = 1,
    ) -> None:
        await defer(interaction)
        await send(interaction, "\n".join([text] * repeat))

    @app_commands.command(name="probe_nodefer", description="A slow command that forgets to defer")
    async def nodefer(self, interaction: discord.Interaction[HFCordBot]) -> None:
        await asyncio.sleep(3.5)  # e.g. a model call made before acknowledging
        try:
            await send(interaction, "too late")
        except discord.HTTPException as exc:
            self.late_errors.append(exc)
            raise

    @app_commands.command(name="probe_admin", description="Only admins get through")
    @admin_only()
    async def admin(self, interaction: discord.Interaction[HFCordBot]) -> None:
        await send(interaction, "admin ok", ephemeral=True)

    @app_commands.command(name="probe_budget", description="Counts against the user's budget")
    async def budget(self, interaction: discord.Interaction[HFCordBot]) -> None:
        with self.bot.usage.hold(interaction.user.id):
            await send(interaction, "within budget")

    @app_commands.command(name="probe_fail", description="Fail after deferring")
    async def fail(
        self, interaction: discord.Interaction[HFCordBot], kind: Literal["user", "crash"]
    ) -> None:
        await defer(interaction)
        if kind == "user":
            raise UserFacingError("That text is too long; keep it under 10 characters.")
        raise RuntimeError("a bug in a cog")
