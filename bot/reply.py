"""The one way hfcord sends messages: mentions off, split under Discord's limit.

Every outgoing message goes through this module. Model output and user text can contain
`@everyone`, role or user mentions; `AllowedMentions.none()` makes sure none of them ping.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import discord

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 2000
NO_MENTIONS = discord.AllowedMentions.none()
_FENCE = "```"
_FENCE_LANG = re.compile(r"```([A-Za-z0-9_+\-.#]{0,32})")
_SENT_KEY = "hfcord_sent"
_PLACEHOLDER_KEY = "hfcord_placeholder"


@dataclass(frozen=True, slots=True)
class Chunk:
    """One message of a split: `prefix + body + suffix`, where only `body` is original text."""

    prefix: str
    body: str
    suffix: str

    @property
    def text(self) -> str:
        return self.prefix + self.body + self.suffix


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split `text` into messages of at most `limit` characters.

    Breaks at a line end when it can, then a sentence end, then a space. A code block cut
    in two is closed at the end of one message and reopened (same language) in the next.
    """
    return [chunk.text for chunk in split_chunks(text, limit)]


def split_chunks(text: str, limit: int = MESSAGE_LIMIT) -> list[Chunk]:
    """Like `split_message`, keeping what was added apart from the original text."""
    if limit < 64:
        raise ValueError("limit must leave room for code fences")
    chunks: list[Chunk] = []
    pos = 0
    open_fence: str | None = None  # e.g. "```py" while inside a code block
    while pos < len(text):
        prefix = f"{open_fence}\n" if open_fence is not None else ""
        rest = text[pos:]
        if len(prefix) + len(rest) <= limit:
            chunks.append(Chunk(prefix, rest, ""))
            break
        # Leave room for a closing fence in case the cut falls inside a code block.
        budget = limit - len(prefix) - len(_FENCE) - 1
        end = pos + _break_point(rest, budget)
        body = text[pos:end]
        open_fence = _fence_state(body, open_fence)
        suffix = ""
        if open_fence is not None:
            suffix = _FENCE if body.endswith("\n") else "\n" + _FENCE
        chunks.append(Chunk(prefix, body, suffix))
        pos = end
    return chunks


def _break_point(rest: str, budget: int) -> int:
    """How many characters of `rest` go in this message (at most `budget`, at least 1)."""
    window = rest[:budget]
    floor = budget // 2  # don't make tiny messages just to break at a nice place
    for pattern in ("\n", ". ", "! ", "? ", " "):
        cut = window.rfind(pattern)
        if cut >= floor:
            return cut + len(pattern)
    cut = budget
    # Never cut through a run of backticks (that would invent or break a fence), nor between
    # an escaping backslash and what it escapes (unless the run fills half a message).
    while cut > max(1, floor) and (rest[cut - 1] in "`\\" or rest[cut] == "`"):
        cut -= 1
    return max(cut, 1)


def _fence_state(body: str, open_fence: str | None) -> str | None:
    """The fence left open after `body`, given the one open before it."""
    for match in _FENCE_LANG.finditer(body):
        open_fence = match.group(0) if open_fence is None else None
    return open_fence


def _clean(chunks: Sequence[str]) -> list[str]:
    # Discord rejects empty and whitespace-only messages; such a chunk carries nothing.
    return [chunk for chunk in chunks if chunk.strip()]


async def send(
    interaction: discord.Interaction,
    content: str | None = None,
    *,
    ephemeral: bool = False,
    embed: discord.Embed | None = None,
    file: discord.File | None = None,
    files: Sequence[discord.File] | None = None,
    view: discord.ui.View | None = None,
) -> discord.Message | None:
    """Reply to an interaction, as its response or as follow-ups; returns the last message.

    Long content becomes several messages; the embed, files and view go on the last one.
    """
    chunks = _clean(split_message(content)) if content else []
    extras: dict[str, Any] = {}
    if embed is not None:
        extras["embed"] = embed
    if file is not None:
        extras["file"] = file
    if files:
        extras["files"] = list(files)
    if view is not None:
        extras["view"] = view
    if not chunks and not extras:
        raise ValueError("nothing to send")
    parts: list[str | None] = list(chunks) or [None]
    message: discord.Message | None = None
    for index, chunk in enumerate(parts):
        kwargs: dict[str, Any] = {"allowed_mentions": NO_MENTIONS, "ephemeral": ephemeral}
        if chunk is not None:
            kwargs["content"] = chunk
        if index == len(parts) - 1:
            kwargs.update(extras)
        if not interaction.response.is_done():
            callback = await interaction.response.send_message(**kwargs)
            resource = getattr(callback, "resource", None)
            message = resource if isinstance(resource, discord.Message) else None
        elif not ephemeral and interaction.extras.pop(_PLACEHOLDER_KEY, False):
            # A progress note ("loading the model…") holds the first message: replace it.
            kwargs.pop("ephemeral")
            if "file" in kwargs or "files" in kwargs:
                kwargs["attachments"] = (
                    [kwargs.pop("file")] if "file" in kwargs else kwargs.pop("files")
                )
            kwargs.setdefault("content", None)
            message = await interaction.edit_original_response(**kwargs)
        else:
            message = await interaction.followup.send(wait=True, **kwargs)
        interaction.extras[_SENT_KEY] = True
    return message


async def show_progress(interaction: discord.Interaction, text: str) -> None:
    """Put a progress note in the deferred response; the answer replaces it."""
    if interaction.extras.get(_SENT_KEY):
        return
    await interaction.edit_original_response(content=text, allowed_mentions=NO_MENTIONS)
    interaction.extras[_PLACEHOLDER_KEY] = True


async def send_error(interaction: discord.Interaction, text: str) -> None:
    """Tell only the invoking user what went wrong, whatever state the interaction is in."""
    if interaction.is_expired():
        log.info("could not report an error, interaction %s expired: %s", interaction.id, text)
        return
    if interaction.response.is_done() and not interaction.extras.get(_SENT_KEY):
        interaction.extras.pop(_PLACEHOLDER_KEY, None)
        # After a public defer the first follow-up replaces the "thinking" message and
        # ignores `ephemeral`; remove the placeholder so the error stays private.
        if interaction.response.type in (
            discord.InteractionResponseType.deferred_channel_message,
            None,  # unknown: a progress note may hold the message
        ):
            try:
                await interaction.delete_original_response()
            except discord.HTTPException:
                log.debug("could not delete the deferred response of %s", interaction.id)
    await send(interaction, text, ephemeral=True)


async def defer(interaction: discord.Interaction, *, ephemeral: bool = False) -> None:
    """Acknowledge now (Discord allows 3 s); the answer follows within 15 minutes."""
    if not interaction.response.is_done():
        await interaction.response.defer(thinking=True, ephemeral=ephemeral)


async def edit_original(
    interaction: discord.Interaction,
    content: str,
    *,
    view: discord.ui.View | None = discord.utils.MISSING,
    attachments: Sequence[discord.File] = discord.utils.MISSING,
) -> None:
    """Replace the interaction's first message; text past the limit goes in follow-ups."""
    chunks = _clean(split_message(content)) or ["\u200b"]
    await interaction.edit_original_response(
        content=chunks[0],
        view=view if len(chunks) == 1 else discord.utils.MISSING,
        attachments=attachments,
        allowed_mentions=NO_MENTIONS,
    )
    interaction.extras[_SENT_KEY] = True
    for index, chunk in enumerate(chunks[1:], start=1):
        last = index == len(chunks) - 1
        await interaction.followup.send(
            chunk,
            allowed_mentions=NO_MENTIONS,
            view=view
            if last and view is not None and view is not discord.utils.MISSING
            else discord.utils.MISSING,
            wait=True,
        )


async def send_to_channel(
    channel: discord.abc.Messageable,
    content: str | None = None,
    *,
    embed: discord.Embed | None = None,
    file: discord.File | None = None,
    view: discord.ui.View | None = None,
    reference: discord.Message | None = None,
) -> discord.Message:
    """Post to a channel (for messages that outlive an interaction's 15-minute token, and
    answers to messages); the first part replies to ``reference`` (without pinging)."""
    chunks = _clean(split_message(content)) if content else []
    parts: list[str | None] = list(chunks) or [None]
    message: discord.Message | None = None
    for index, chunk in enumerate(parts):
        kwargs: dict[str, Any] = {"allowed_mentions": NO_MENTIONS}
        if index == 0 and reference is not None:
            kwargs["reference"] = reference.to_reference(fail_if_not_exists=False)
        if index == len(parts) - 1:
            if embed is not None:
                kwargs["embed"] = embed
            if file is not None:
                kwargs["file"] = file
            if view is not None:
                kwargs["view"] = view
        message = await channel.send(chunk, **kwargs)
    assert message is not None
    return message


async def edit_message(
    message: discord.Message,
    content: str,
    *,
    view: discord.ui.View | None = discord.utils.MISSING,
    attachments: Sequence[discord.File] = discord.utils.MISSING,
) -> discord.Message:
    """Edit a message the bot posted; content is cut to fit one message."""
    chunks = _clean(split_message(content)) or ["\u200b"]
    text = chunks[0]
    if len(chunks) > 1:
        # One message only: keep the start, fences balanced, and show that it goes on.
        text = split_message(content, MESSAGE_LIMIT - 2)[0] + " …"
    return await message.edit(
        content=text, view=view, attachments=attachments, allowed_mentions=NO_MENTIONS
    )


async def update_from_component(
    interaction: discord.Interaction,
    content: str,
    *,
    view: discord.ui.View | None = discord.utils.MISSING,
) -> None:
    """Answer a button click by editing the message the button is on."""
    chunks = _clean(split_message(content)) or ["\u200b"]
    await interaction.response.edit_message(
        content=chunks[0], view=view, allowed_mentions=NO_MENTIONS
    )


class _GrowingReply:
    """A reply that grows (streamed generation): rendered into as many messages as it needs.

    Only changed messages are edited, and the view (e.g. a Stop button) sits on the last
    message until the reply is final. Subclasses say where messages go.
    """

    def __init__(self, *, view: discord.ui.View | None, limit: int) -> None:
        self.view = view
        self.limit = limit
        self.messages: list[Any] = []  # index -> the message showing that part (once sent)
        self.rendered: list[str] = []
        self.view_at: int | None = None

    async def render(self, text: str, *, final: bool = False) -> None:
        chunks = _clean(split_message(text, self.limit)) or ["…"]
        want_view_at = None if final or self.view is None else len(chunks) - 1
        for index, chunk in enumerate(chunks):
            has_view = index == want_view_at
            had_view = index == self.view_at
            view: Any = self.view if has_view else None
            if index < len(self.rendered):
                if self.rendered[index] == chunk and has_view == had_view:
                    continue
                await self._edit(index, chunk, view)
            else:
                await self._create(index, chunk, view)
        self.rendered = chunks
        self.view_at = want_view_at

    async def _create(self, index: int, content: str, view: discord.ui.View | None) -> None:
        raise NotImplementedError

    async def _edit(self, index: int, content: str, view: discord.ui.View | None) -> None:
        message = self.messages[index]
        await message.edit(content=content, view=view, allowed_mentions=NO_MENTIONS)


class StreamingReply(_GrowingReply):
    """A growing reply to an interaction: message 0 is its original (deferred) response, text
    past the limit continues in follow-ups."""

    def __init__(
        self,
        interaction: discord.Interaction,
        *,
        view: discord.ui.View | None = None,
        limit: int = MESSAGE_LIMIT,
    ) -> None:
        super().__init__(view=view, limit=limit)
        self.interaction = interaction
        self.messages = [None]

    async def render(self, text: str, *, final: bool = False) -> None:
        await super().render(text, final=final)
        self.interaction.extras[_SENT_KEY] = True

    async def _create(self, index: int, content: str, view: discord.ui.View | None) -> None:
        if index == 0:
            await self._edit(0, content, view)
            return
        message = await self.interaction.followup.send(
            content,
            allowed_mentions=NO_MENTIONS,
            view=view if view is not None else discord.utils.MISSING,
            wait=True,
        )
        self.messages.append(message)

    async def _edit(self, index: int, content: str, view: discord.ui.View | None) -> None:
        if index == 0:
            await self.interaction.edit_original_response(
                content=content, view=view, allowed_mentions=NO_MENTIONS
            )
        else:
            await super()._edit(index, content, view)


class ChannelStreamingReply(_GrowingReply):
    """A growing reply posted in a channel, thread or DM (an answer to a message, which has no
    interaction to respond through).

    The first message replies to ``reference`` when given (without pinging its author); with
    ``chain`` each later part replies to the part before it, so a reply chain walked upwards
    from any part passes through the whole answer.
    """

    def __init__(
        self,
        channel: discord.abc.Messageable,
        *,
        reference: discord.Message | None = None,
        chain: bool = False,
        view: discord.ui.View | None = None,
        limit: int = MESSAGE_LIMIT,
    ) -> None:
        super().__init__(view=view, limit=limit)
        self.channel = channel
        self.reference = reference
        self.chain = chain

    async def _create(self, index: int, content: str, view: discord.ui.View | None) -> None:
        parent = self.reference if index == 0 else (self.messages[-1] if self.chain else None)
        kwargs: dict[str, Any] = {"allowed_mentions": NO_MENTIONS}
        if parent is not None:
            kwargs["reference"] = parent.to_reference(fail_if_not_exists=False)
        if view is not None:
            kwargs["view"] = view
        self.messages.append(await self.channel.send(content, **kwargs))
