"""The Discord side of `JobReporter`: job messages in their channels, through bot/reply.py."""

from __future__ import annotations

import io
import logging
from typing import cast

import discord

from bot.finetune.interfaces import Picture
from bot.reply import edit_message, send_to_channel

log = logging.getLogger(__name__)


class DiscordJobReporter:
    """Posts and edits fine-tuning messages as ``client``; delivery failures are logged."""

    def __init__(self, client: discord.Client) -> None:
        self._client = client

    async def wait_until_ready(self) -> None:
        await self._client.wait_until_ready()

    def _channel(self, channel_id: int) -> discord.abc.Messageable:
        channel = self._client.get_channel(channel_id)
        if isinstance(channel, discord.abc.Messageable):
            return channel
        # Not cached (e.g. an archived thread): sending needs only the id.
        return self._client.get_partial_messageable(channel_id)

    async def post(
        self, channel_id: int, text: str, *, picture: Picture | None = None
    ) -> int | None:
        file = None
        if picture is not None:
            file = discord.File(io.BytesIO(picture.data), filename=picture.filename)
        try:
            message = await send_to_channel(self._channel(channel_id), text, file=file)
        except discord.HTTPException as exc:
            log.warning("could not post a fine-tuning message in channel %s: %s", channel_id, exc)
            return None
        return message.id

    async def edit(self, channel_id: int, message_id: int, text: str) -> None:
        channel = self._client.get_partial_messageable(channel_id)
        # A partial message edits like a full one: only the ids are needed.
        message = cast(discord.Message, channel.get_partial_message(message_id))
        try:
            await edit_message(message, text)
        except discord.HTTPException as exc:
            log.warning("could not edit fine-tuning message %s: %s", message_id, exc)
