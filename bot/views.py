"""Reusable message components."""

from __future__ import annotations

import discord

from bot.reply import MESSAGE_LIMIT, send, split_message, update_from_component


def paginate(text: str, page_size: int = 1800) -> list[str]:
    """`text` in pages that fit one message with room for a page header."""
    return split_message(text, min(page_size, MESSAGE_LIMIT - 100)) or [""]


class Pager(discord.ui.View):
    """◀ / ▶ buttons over pages of text; only the user who asked can turn them."""

    def __init__(
        self, pages: list[str], *, owner_id: int, header: str = "", timeout: float = 600
    ) -> None:
        super().__init__(timeout=timeout)
        self.pages = pages
        self.owner_id = owner_id
        self.header = header
        self.index = 0
        self._sync_buttons()

    def render(self) -> str:
        footer = f"\n-# page {self.index + 1} of {len(self.pages)}" if len(self.pages) > 1 else ""
        return f"{self.header}{self.pages[self.index]}{footer}"

    def _sync_buttons(self) -> None:
        self.previous.disabled = self.index == 0
        self.next.disabled = self.index >= len(self.pages) - 1

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.owner_id:
            await send(
                interaction, "Only the person who asked can turn these pages.", ephemeral=True
            )
            return False
        return True

    async def _turn(self, interaction: discord.Interaction, step: int) -> None:
        self.index = max(0, min(len(self.pages) - 1, self.index + step))
        self._sync_buttons()
        await update_from_component(interaction, self.render(), view=self)

    @discord.ui.button(label="◀ Previous", style=discord.ButtonStyle.secondary)
    async def previous(
        self, interaction: discord.Interaction, button: discord.ui.Button[Pager]
    ) -> None:
        await self._turn(interaction, -1)

    @discord.ui.button(label="Next ▶", style=discord.ButtonStyle.secondary)
    async def next(
        self, interaction: discord.Interaction, button: discord.ui.Button[Pager]
    ) -> None:
        await self._turn(interaction, +1)
