"""/generate: text generation streamed into Discord by message edits, with a Stop button.

The generated text is shown as plain text (bot.text.plain): a model's markdown cannot phish with
masked links or break the reply's layout.
"""

from __future__ import annotations

import asyncio
import logging
import time

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import is_admin
from bot.client import HFCordBot
from bot.inputs import bounded_text, loading_note, registry_of
from bot.reply import StreamingReply, defer, send
from bot.text import clip, plain
from models.specs import GenerationParams, Task

log = logging.getLogger(__name__)

EDIT_INTERVAL_S = 1.0  # Discord rate-limits message edits; about one a second reads well


class StopButton(discord.ui.View):
    """Ends a generation early; only the person who asked (or an admin) can press it."""

    def __init__(self, owner_id: int) -> None:
        super().__init__(timeout=None)
        self.owner_id = owner_id
        self.cancel = asyncio.Event()

    async def interaction_check(self, interaction: discord.Interaction[HFCordBot]) -> bool:  # type: ignore[override]
        if interaction.user.id == self.owner_id or is_admin(interaction):
            return True
        await send(
            interaction, "Only the person who started this generation can stop it.", ephemeral=True
        )
        return False

    @discord.ui.button(label="Stop", style=discord.ButtonStyle.danger, emoji="⏹️")
    async def stop_button(
        self, interaction: discord.Interaction, button: discord.ui.Button[StopButton]
    ) -> None:
        self.cancel.set()
        button.disabled = True
        button.label = "Stopping…"
        # Acknowledge the click; the generation loop renders the final text right after.
        await interaction.response.defer()


def render(prompt: str, text: str, footer: str | None = None, *, note: str | None = None) -> str:
    """The reply: the prompt in bold, the generated ``text`` as plain text, then a ``note``
    (the bot's own, e.g. "loading the model") and a small ``footer``."""
    head = f"**{plain(clip(prompt, 300))}**"
    body = plain(text) if text.strip() else (note or "…")
    out = f"{head}\n{body}"
    if footer:
        out += f"\n-# {footer}"
    return out


# When the bot closes, running generations are stopped and get this long to post their final
# text (the Stop button removed) before the connection to Discord closes.
CLOSE_GRACE_S = 5.0


class Generation(commands.Cog):
    def __init__(self, bot: HFCordBot) -> None:
        self.bot = bot
        self._active: set[asyncio.Event] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    async def cog_unload(self) -> None:
        # discord.py unloads cogs before it closes its HTTP session (bot.close()).
        for cancel in self._active:
            cancel.set()
        try:
            await asyncio.wait_for(self._idle.wait(), CLOSE_GRACE_S)
        except TimeoutError:
            log.warning(
                "%d generation(s) did not end within %.0f s of closing",
                len(self._active),
                CLOSE_GRACE_S,
            )

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
        self._active.add(view.cancel)
        self._idle.clear()
        reply = StreamingReply(interaction, view=view, limit=1900)
        text = ""
        last_edit = 0.0
        try:
            stream = registry.generate(
                prompt, params, guild_id=interaction.guild_id, cancel=view.cancel
            )
            note = loading_note(registry, Task.GENERATION, interaction.guild_id)
            await reply.render(render(prompt, "", note=note))
            last_edit = time.monotonic()
            async for piece in stream:
                text += piece
                now = time.monotonic()
                if now - last_edit >= EDIT_INTERVAL_S:
                    await reply.render(render(prompt, text))
                    last_edit = now
            stats = stream.stats
            assert stats is not None  # set once the stream is exhausted
            reason = {"length": "hit max_tokens", "stop": "finished", "cancelled": "stopped"}.get(
                stats.finish_reason, stats.finish_reason
            )
            footer = (
                f"{stats.new_tokens} tokens · {stats.seconds:.1f} s · {reason}{capped} · "
                + plain(stats.model_name)
            )
            await reply.render(render(prompt, stats.text or text, footer), final=True)
        except BaseException:
            if reply.rendered:  # take the Stop button away from a reply that will not grow
                try:
                    await reply.render(render(prompt, text, "generation failed"), final=True)
                except discord.HTTPException:
                    pass
            raise
        finally:
            view.stop()
            self._active.discard(view.cancel)
            if not self._active:
                self._idle.set()


async def setup(bot: HFCordBot) -> None:
    await bot.add_cog(Generation(bot))
