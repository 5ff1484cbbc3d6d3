"""/generate: text generation streamed into Discord by message edits, with a Stop button.

The generated text is shown as plain text (bot.text.plain): a model's markdown cannot phish with
masked links or break the reply's layout.
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import HFCordBot
from bot.inputs import bounded_text, loading_note, registry_of
from bot.reply import StreamingReply, defer
from bot.streaming import FINISH_WORDS, ActiveGenerations, StopButton, Streamed, stream_into
from bot.text import clip, plain
from models.specs import GenerationParams, Task


def render(prompt: str, text: str, footer: str | None = None, *, note: str | None = None) -> str:
    """The reply: the prompt in bold, the generated ``text`` as plain text, then a ``note``
    (the bot's own, e.g. "loading the model") and a small ``footer``."""
    head = f"**{plain(clip(prompt, 300))}**"
    body = plain(text) if text.strip() else (note or "…")
    out = f"{head}\n{body}"
    if footer:
        out += f"\n-# {footer}"
    return out


class Generation(commands.Cog):
    def __init__(self, bot: HFCordBot) -> None:
        self.bot = bot
        self._active = ActiveGenerations()

    async def cog_unload(self) -> None:
        await self._active.stop_all()  # before discord.py closes its session

    @app_commands.command(name="generate")
    @app_commands.describe(
        prompt="What the model should continue or answer",
        max_tokens="How many tokens to write at most",
        temperature="0 for the most likely words, higher for more surprising text (0 to 2)",
        top_p="Sample only from the most likely words making up this probability (0 to 1)",
    )
    async def generate(
        self,
        interaction: discord.Interaction[HFCordBot],
        prompt: str,
        max_tokens: app_commands.Range[int, 1, 4096] | None = None,
        temperature: app_commands.Range[float, 0.0, 2.0] = 0.8,
        top_p: app_commands.Range[float, 0.0, 1.0] = 0.95,
    ) -> None:
        """Write text from a prompt, streamed as it is generated."""
        # The request counts as in flight until the stream ends (fair use, bot/usage.py).
        with self.bot.usage.hold(interaction.user.id):
            await self._generate(interaction, prompt, max_tokens, temperature, top_p)

    async def _generate(
        self,
        interaction: discord.Interaction[HFCordBot],
        prompt: str,
        max_tokens: int | None,
        temperature: float,
        top_p: float,
    ) -> None:
        settings = self.bot.settings
        prompt = bounded_text(prompt, settings.max_input_chars, what="prompt")
        cap = settings.max_new_tokens
        capped = (
            f" (max_tokens is capped at {cap})"
            if max_tokens is not None and max_tokens > cap
            else ""
        )
        params = GenerationParams(
            max_new_tokens=min(max_tokens or cap, cap), temperature=temperature, top_p=top_p
        )
        await defer(interaction)
        registry = registry_of(self.bot)

        view = StopButton(interaction.user.id)
        reply = StreamingReply(interaction, view=view, limit=1900)
        try:
            with self._active.track(view.cancel):
                stream = registry.generate(
                    prompt, params, guild_id=interaction.guild_id, cancel=view.cancel
                )
                note = loading_note(registry, Task.GENERATION, interaction.guild_id)

                def final(streamed: Streamed) -> str:
                    stats = streamed.stats
                    reason = FINISH_WORDS.get(stats.finish_reason, stats.finish_reason)
                    footer = (
                        f"{stats.new_tokens} tokens · {stats.seconds:.1f} s · {reason}{capped}"
                        f" · {plain(stats.model_name)}"
                    )
                    return render(prompt, streamed.text, footer)

                await stream_into(
                    reply,
                    stream,
                    first=render(prompt, "", note=note),
                    partial=lambda text: render(prompt, text),
                    final=final,
                    failed=lambda text: render(prompt, text, "generation failed"),
                )
        finally:
            view.stop()


async def setup(bot: HFCordBot) -> None:
    await bot.add_cog(Generation(bot))
