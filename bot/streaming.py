"""Streaming a generation into Discord with a Stop button: the one path /generate and chat use.

A :class:`StopButton` sets a cancel flag the generation reads between tokens; :func:`stream_into`
reads a :class:`~models.streams.GenerationStream` and renders it into a growing reply
(``bot.reply.StreamingReply`` for an interaction, ``ChannelStreamingReply`` for an answer to a
message) about once a second, then once more, final and without the button. What each render
shows is the caller's: the functions it passes format the partial text, the final text with
its stats, and what is left when generation fails.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import discord

from bot.checks import is_admin
from bot.reply import send

if TYPE_CHECKING:
    from bot.client import HFCordBot
    from models.results import GenerationStats
    from models.streams import GenerationStream

log = logging.getLogger(__name__)

EDIT_INTERVAL_S = 1.0  # Discord rate-limits message edits; about one a second reads well
# When the bot closes, running generations are stopped and get this long to post their final
# text (the Stop button removed) before the connection to Discord closes.
CLOSE_GRACE_S = 5.0
# How a generation ended, as footers say it.
FINISH_WORDS = {"length": "hit max_tokens", "stop": "finished", "cancelled": "stopped"}


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


class ActiveGenerations:
    """The generations a cog is streaming, so that closing the bot ends them cleanly.

    discord.py unloads cogs before it closes its HTTP session (``bot.close()``): a cog's
    ``cog_unload`` awaits :meth:`stop_all`, which sets every cancel flag and waits (at most
    ``CLOSE_GRACE_S``) for their final renders, so no reply keeps a Stop button that no longer
    works and no edit meets a closed session.
    """

    def __init__(self) -> None:
        self._cancels: set[asyncio.Event] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._cancels)

    @contextmanager
    def track(self, cancel: asyncio.Event) -> Iterator[None]:
        """Count a generation (its ``cancel`` flag) as running in the block."""
        self._cancels.add(cancel)
        self._idle.clear()
        try:
            yield
        finally:
            self._cancels.discard(cancel)
            if not self._cancels:
                self._idle.set()

    async def stop_all(self, grace_s: float = CLOSE_GRACE_S) -> None:
        """Stop every generation and wait for them to post their final text."""
        for cancel in self._cancels:
            cancel.set()
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
        except TimeoutError:
            log.warning("%d generation(s) did not end within %.0f s of closing", len(self), grace_s)


class GrowingReply(Protocol):
    """What :func:`stream_into` renders into (``bot.reply``'s streaming replies)."""

    rendered: list[str]

    async def render(self, text: str, *, final: bool = False) -> None: ...


@dataclass(frozen=True)
class Streamed:
    """A finished stream: the ``text`` shown, its ``stats``, and whether ``cut`` ended it."""

    text: str
    stats: GenerationStats
    cut: bool


async def stream_into(
    reply: GrowingReply,
    stream: GenerationStream,
    *,
    first: str,
    partial: Callable[[str], str],
    final: Callable[[Streamed], str],
    failed: Callable[[str], str],
    cut: Callable[[str], str | None] | None = None,
    cancel: asyncio.Event | None = None,
    interval: float = EDIT_INTERVAL_S,
) -> Streamed:
    """Render ``first`` (e.g. a loading note), then the text as it grows (``partial``), then
    ``final`` (from the finished stream). ``cut`` may end the text early: it returns the text to keep once the rest is not
    wanted (e.g. a base model writing the next speaker's line), and ``cancel`` is then set so
    generation stops. If anything fails after a render, ``failed`` replaces the reply (taking
    the Stop button away) before the error goes on.
    """
    text = ""
    was_cut = False
    try:
        await reply.render(first)
        last_edit = time.monotonic()
        async for piece in stream:
            if was_cut:
                continue  # generation stops at its next token
            text += piece
            if cut is not None:
                kept = cut(text)
                if kept is not None:
                    text, was_cut = kept, True
                    if cancel is not None:
                        cancel.set()
            now = time.monotonic()
            if now - last_edit >= interval:
                await reply.render(partial(text))
                last_edit = now
        stats = stream.stats
        assert stats is not None  # set once the stream is exhausted
        streamed = Streamed(text if was_cut else (stats.text or text), stats, was_cut)
        await reply.render(final(streamed), final=True)
        return streamed
    except BaseException:
        if reply.rendered:
            try:
                await reply.render(failed(text), final=True)
            except discord.HTTPException:
                pass
        raise
