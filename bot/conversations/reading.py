"""Reading a conversation back from Discord: a thread's or DM's recent history, or the reply
chain above a message, as :class:`~bot.conversations.turns.Said`.

Walking a reply chain costs a REST call per message not already known (Discord sends only the
first parent with an event), so the walk is bounded by the caller's limit and fetched messages
are kept in a small cache; text attachments read once are kept too. People's messages are read
as Discord's client shows them (mentions as names); a leading mention of the bot is dropped.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import PurePath
from typing import Generic, TypeVar

import discord

from bot.conversations.turns import Said
from bot.text import clip
from bot.uploads import TEXT_SUFFIXES, UploadError, read_text_attachment

log = logging.getLogger(__name__)

# Message types that hold what people or the bot said (not joins, pins, thread notices...).
SPOKEN_TYPES = frozenset(
    {
        discord.MessageType.default,
        discord.MessageType.reply,
        discord.MessageType.chat_input_command,
        discord.MessageType.context_menu_command,
    }
)
MAX_ATTACHMENT_BYTES = 100_000

K = TypeVar("K")
V = TypeVar("V")


class _Cache(Generic[K, V]):
    """The ``size`` most recently used entries."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


@dataclass(frozen=True)
class Excerpt:
    """Messages of a conversation, oldest first (the newest last), and whether they reach its
    start (``complete``; False when older ones lie past the limit)."""

    said: tuple[Said, ...]
    complete: bool


class MessageReader:
    """Reads Discord messages for conversations; one per bot (it holds the caches)."""

    def __init__(
        self, client: discord.Client, *, max_attachment_chars: int, cache_size: int = 512
    ) -> None:
        self.client = client
        self.max_attachment_chars = max_attachment_chars
        self._messages: _Cache[int, discord.Message] = _Cache(cache_size)
        self._attachments: _Cache[int, str] = _Cache(cache_size // 4)

    @property
    def _bot_id(self) -> int:
        assert self.client.user is not None
        return self.client.user.id

    async def history(
        self, channel: discord.abc.Messageable, upto: discord.Message | None, limit: int
    ) -> Excerpt:
        """The last ``limit`` messages of a thread or DM, up to and with ``upto`` (None: the
        newest)."""
        wanted = limit - 1 if upto is not None else limit
        found = [
            m async for m in channel.history(limit=wanted, before=upto) if m.type in SPOKEN_TYPES
        ]
        messages = [*reversed(found), *([upto] if upto is not None else [])]
        said = tuple([await self.said(m) for m in messages])
        return Excerpt(said, complete=len(found) < wanted)

    async def chain(self, message: discord.Message, limit: int) -> Excerpt:
        """``message`` and the messages it replies to, up the chain, at most ``limit``."""
        chain = [message]
        current = message
        complete = True
        while True:
            reference = current.reference
            if reference is None or reference.message_id is None:
                break
            if reference.channel_id != current.channel.id:
                break  # a reply across channels (a forward): the chain starts here
            if len(chain) >= limit:
                complete = False
                break
            parent = await self._parent(current, reference)
            if parent is None:
                break
            chain.append(parent)
            current = parent
        said = tuple([await self.said(m) for m in reversed(chain)])
        return Excerpt(said, complete=complete)

    async def _parent(
        self, message: discord.Message, reference: discord.MessageReference
    ) -> discord.Message | None:
        assert reference.message_id is not None
        resolved = reference.resolved
        if isinstance(resolved, discord.Message):
            return resolved
        if isinstance(resolved, discord.DeletedReferencedMessage):
            return None
        cached = self._messages.get(reference.message_id)
        if cached is not None:
            return cached
        try:
            parent = await message.channel.fetch_message(reference.message_id)
        except discord.NotFound:
            return None  # deleted: the chain starts after it
        except discord.HTTPException as exc:
            log.info("could not fetch message %s of a reply chain: %s", reference.message_id, exc)
            return None
        self._messages.put(parent.id, parent)
        return parent

    async def said(self, message: discord.Message) -> Said:
        """``message`` as a conversation reads it."""
        name = message.author.display_name
        if message.author.id == self._bot_id:
            return Said(message.id, message.author.id, name, by_bot=True, text=message.content)
        text = self._clean(message)
        unread: list[str] = []
        for attachment in message.attachments:
            read = await self._read(attachment)
            if read is None:
                unread.append(attachment.filename)
            else:
                text += f"\n[{attachment.filename}]\n{read}"
        hidden = (
            message.guild is not None
            and not self.client.intents.message_content
            and not text.strip()
            and not message.attachments
            and not message.embeds
            and not message.stickers
        )
        return Said(
            message.id,
            message.author.id,
            name,
            by_bot=False,
            text=text.strip(),
            unread=tuple(unread),
            hidden=hidden,
        )

    def _clean(self, message: discord.Message) -> str:
        """The content as Discord shows it, without a leading mention of the bot."""
        text = message.clean_content.strip()
        bot_mentions = (f"<@{self._bot_id}>", f"<@!{self._bot_id}>")
        if message.content.lstrip().startswith(bot_mentions):
            me = message.guild.me if message.guild is not None else self.client.user
            shown = f"@{me.display_name}" if me is not None else ""
            if shown and text.startswith(shown):
                text = text[len(shown) :].lstrip(" ,:")
        return text

    async def _read(self, attachment: discord.Attachment) -> str | None:
        """A small text attachment's text (clipped), or None when it cannot be read."""
        suffix = PurePath(attachment.filename).suffix.lower()
        if suffix not in TEXT_SUFFIXES or attachment.size > MAX_ATTACHMENT_BYTES:
            return None
        cached = self._attachments.get(attachment.id)
        if cached is not None:
            return cached
        try:
            text = await read_text_attachment(attachment, max_bytes=MAX_ATTACHMENT_BYTES)
        except UploadError as exc:
            log.debug("attachment %s not read: %s", attachment.id, exc)
            return None
        text = clip(text.strip(), self.max_attachment_chars)
        self._attachments.put(attachment.id, text)
        return text
