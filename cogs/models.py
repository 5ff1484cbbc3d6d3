"""/models: which model serves each task here, where it comes from, and its state.

Models are shown by name (a folder's name, a hub id, "fine-tuned job #12"), never by path;
a server's own model that cannot be served says so, and that the default model answers instead.
A model on an inference engine shows the backend, the engine's host (never its key) and its
health; /models asks each engine first (a few seconds at most).
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import HFCordBot
from bot.inputs import registry_of
from bot.reply import defer, send
from bot.text import code_span, plain
from models.engines import EngineHealth, whole_seconds
from models.results import ModelStatus

_STATE = {
    "ready": "🟢 ready",
    "loading": "🟡 loading",
    "not loaded": "⚪ loads on first use",
    "failed": "🔴 failed",
}


def shown_name(status: ModelStatus) -> str:
    """The model's name as inline code, with its GGUF file."""
    return code_span(status.name + (f" ({status.gguf_file})" if status.gguf_file else ""))


def health_text(health: EngineHealth) -> str:
    """An engine's health, as /models shows it."""
    if health.state == "answering":
        text = "🟢 answering"
        if health.first_token_ms is not None:
            text += f" ({health.first_token_ms:.0f} ms)"
        return text
    if health.state == "unknown":
        return "⚪ not asked yet"
    if health.state == "paused":
        text = "🟠 paused after repeated failures"
        if health.retry_in_s is not None:
            text += f", tries again in {whole_seconds(health.retry_in_s)} s"
    else:
        text = "🔴 failing"
    return text + (f": {plain(health.detail)}" if health.detail else "")


def status_line(status: ModelStatus, *, promoted: bool = False) -> str:
    if status.health is not None:
        where = f"{status.backend} at {code_span(status.health.host)}"
        line = f"**{status.task}**: {shown_name(status)} · {where}"
        if status.state == "failed" and status.reason:
            return line + f" · 🔴 failed: {plain(status.reason)}"
        return line + f" · {health_text(status.health)}"
    line = f"**{status.task}**: {shown_name(status)} · {status.source}"
    if promoted:
        line += " · promoted in this server"
    if status.description:
        line += f" · {plain(status.description)}"
    line += f" · {_STATE.get(status.state, status.state)}"
    if status.state == "ready" and status.load_seconds is not None:
        line += f" (loaded in {status.load_seconds:.1f} s)"
    if status.state == "failed" and status.reason:
        line += f": {plain(status.reason)}"
    return line


def format_statuses(statuses: list[ModelStatus], guild_id: int | None) -> str:
    overrides = {s.task: s for s in statuses if guild_id is not None and s.guild_id == guild_id}
    lines = ["**Models serving this server**" if guild_id else "**Models**"]
    for status in statuses:
        if status.guild_id is not None:
            continue
        override = overrides.get(status.task)
        if override is None:
            lines.append(status_line(status))
        elif override.state == "failed":
            # The registry answers this server's requests with the default model meanwhile.
            lines.append(status_line(override, promoted=True))
            lines.append(
                f"-# ↳ until it can be loaded again, this server's {status.task} requests are "
                f"answered by the default model, {shown_name(status)}"
            )
        else:
            lines.append(status_line(override, promoted=True))
            lines.append(f"-# default for other servers: {shown_name(status)}")
    return "\n".join(lines)


class Models(commands.Cog):
    def __init__(self, bot: HFCordBot) -> None:
        self.bot = bot

    @app_commands.command(name="models")
    async def models(self, interaction: discord.Interaction[HFCordBot]) -> None:
        """Which model serves each task here, and whether it is loaded."""
        registry = registry_of(self.bot)
        if any(s.health is not None for s in registry.statuses(interaction.guild_id)):
            await defer(interaction, ephemeral=True)  # asking the engines takes a moment
            await registry.probe_engines(interaction.guild_id)
        statuses = registry.statuses(interaction.guild_id)
        await send(interaction, format_statuses(statuses, interaction.guild_id), ephemeral=True)


async def setup(bot: HFCordBot) -> None:
    await bot.add_cog(Models(bot))
