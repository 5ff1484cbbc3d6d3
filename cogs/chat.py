"""Conversations: /chat opens a thread and answers there; mentions, replies to the bot and (when
allowed) direct messages get answers that read the conversation back from Discord.

Which messages are answered:

- in a chat thread (opened by /chat): every message with the Message Content intent on
  (``HFCORD_MESSAGE_CONTENT_INTENT``), else those that mention the bot or reply to it; the
  conversation is the thread's recent history after its starter;
- anywhere else the bot can see: messages that mention it or reply to one of its messages; the
  conversation is the reply chain above the message;
- direct messages, when ``HFCORD_ALLOW_DMS`` is on; the conversation is the DM's recent history.

Answers stream into the channel with a Stop button, through ``bot.reply`` and ``bot.streaming``
as /generate's do. A message event cannot be answered privately, so refusals (the per-user
budget, a busy server, an unreadable message) are short replies to the message, recorded as
notes so conversations leave them out; a person told once is only shown a ⏳ reaction for the
next 30 seconds, so a flood of messages cannot make the bot flood the channel.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import HFCordBot
from bot.conversations import Conversation, MessageReader
from bot.errors import UserFacingError, describe_error
from bot.inputs import bounded_text, loading_note, registry_of
from bot.reply import ChannelStreamingReply, send, send_to_channel
from bot.streaming import FINISH_WORDS, ActiveGenerations, StopButton, Streamed, stream_into
from bot.text import clip, plain
from models.specs import Task

log = logging.getLogger(__name__)

Source = Literal["thread", "chain", "dm"]
CAN_NOT_READ = (
    "I can't read that message: this bot runs without Discord's Message Content intent, so I "
    "only see messages that mention me. Mention me, or keep the reply's ping on."
)
NO_DMS = (
    "I don't answer direct messages on this bot (its operator turned them off). Mention me in "
    "a server instead."
)
ECHO_LIMIT = 1800  # characters of a /chat message shown back, so the echo is one message


def render_reply(text: str, footer: str | None = None, *, note: str | None = None) -> str:
    """A chat reply: the model's ``text`` as plain text (or the bot's ``note`` before there is
    any), then one small footer line. ``bot.conversations.turns.bot_words`` reads it back."""
    body = plain(text) if text.strip() else (note or "…")
    return f"{body}\n-# {footer}" if footer else body


def thread_name(message: str) -> str:
    """A thread's name from the message that opens it: its first words, on one line."""
    return clip(" ".join(message.split()), 90) or "Chat"


def _may_manage_channels(interaction: discord.Interaction[HFCordBot]) -> bool:
    if interaction.user.id in interaction.client.settings.admin_ids:
        return True
    return interaction.permissions.manage_channels


class Chat(commands.Cog):
    def __init__(self, bot: HFCordBot) -> None:
        self.bot = bot
        self.conversations = bot.conversations
        self.records = bot.conversations.records
        self.reader = MessageReader(bot, max_attachment_chars=bot.settings.max_input_chars)
        self._active = ActiveGenerations()

    async def cog_unload(self) -> None:
        await self._active.stop_all()  # before discord.py closes its session

    # -- /chat ---------------------------------------------------------------------------

    @app_commands.command(name="chat")
    @app_commands.guild_only()
    @app_commands.describe(
        message="What to say to the model",
        persona="How the model should act in this chat (default: this channel's persona)",
    )
    async def chat(
        self,
        interaction: discord.Interaction[HFCordBot],
        message: str,
        persona: str | None = None,
    ) -> None:
        """Chat with the model in a thread; later messages there continue the conversation."""
        settings = self.bot.settings
        text = bounded_text(message, settings.max_input_chars, what="message")
        persona_text = (
            bounded_text(persona, settings.max_input_chars, what="persona")
            if persona is not None
            else None
        )
        channel = interaction.channel
        if not isinstance(channel, (discord.TextChannel, discord.Thread)):
            raise UserFacingError("Start a chat in a text channel, or mention me here.")
        # A busy server refuses first (a refusal costs no budget); then the request counts
        # as one in flight until the answer's stream ends (bot/usage.py).
        with self.conversations.slots.take(interaction.guild_id):
            with self.bot.usage.hold(interaction.user.id):
                if isinstance(channel, discord.Thread):
                    await self._continue(interaction, channel, text, persona_text)
                else:
                    await self._open(interaction, channel, text, persona_text)

    async def _open(
        self,
        interaction: discord.Interaction[HFCordBot],
        channel: discord.TextChannel,
        text: str,
        persona: str | None,
    ) -> None:
        name = interaction.user.display_name
        shown = plain(clip(text, ECHO_LIMIT))
        echo = await send(interaction, f"💬 **{plain(name)}** started a chat: {shown}")
        if echo is None:
            echo = await interaction.original_response()
        try:
            thread = await echo.create_thread(name=thread_name(text), auto_archive_duration=1440)
        except discord.Forbidden:
            raise UserFacingError(
                "I can't open a thread here: I need the Create Public Threads and Send Messages "
                "in Threads permissions in this channel."
            ) from None
        assert interaction.guild_id is not None
        conversation = await self.records.start(
            thread_id=thread.id,
            guild_id=interaction.guild_id,
            parent_id=channel.id,
            starter_message_id=echo.id,
            author_id=interaction.user.id,
            author_name=name,
            starter=text,
            persona=persona,
        )
        async with self.conversations.locks.hold(thread.id):
            await self._answer(
                thread,
                upto=None,
                owner_id=interaction.user.id,
                guild_id=interaction.guild_id,
                conversation=conversation,
                source="thread",
            )

    async def _continue(
        self,
        interaction: discord.Interaction[HFCordBot],
        thread: discord.Thread,
        text: str,
        persona: str | None,
    ) -> None:
        conversation = await self.records.conversation(thread.id)
        if conversation is None:
            raise UserFacingError(
                "This thread isn't a chat: run /chat in a text channel to start one, or "
                "mention me here and I'll answer from the messages you reply to."
            )
        if persona is not None:
            if interaction.user.id != conversation.author_id and not _may_manage_channels(
                interaction
            ):
                raise UserFacingError(
                    "Only the person who started this chat, or members with the Manage "
                    "Channels permission, can change its persona."
                )
            await self.records.set_persona(
                channel_id=thread.id,
                guild_id=interaction.guild_id,
                text=persona,
                user_id=interaction.user.id,
            )
        name = interaction.user.display_name
        echo = await send(interaction, f"**{plain(name)}:** {plain(clip(text, ECHO_LIMIT))}")
        if echo is None:
            echo = await interaction.original_response()
        await self.records.record_prompt(
            message_id=echo.id,
            channel_id=thread.id,
            author_id=interaction.user.id,
            author_name=name,
            content=text,
        )
        async with self.conversations.locks.hold(thread.id):
            await self._answer(
                thread,
                upto=echo,
                owner_id=interaction.user.id,
                guild_id=interaction.guild_id,
                conversation=conversation,
                source="thread",
                reply_to=echo,
            )

    # -- messages ------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.type not in (
            discord.MessageType.default,
            discord.MessageType.reply,
        ):
            return
        try:
            source = await self._source(message)
            if source is not None:
                await self._answer_message(message, source)
        except Exception as exc:
            await self._refuse(message, exc)

    async def _source(self, message: discord.Message) -> Source | None:
        """Whether to answer ``message`` and where its conversation is; None to stay quiet."""
        assert self.bot.user is not None
        bot_id = self.bot.user.id
        if message.guild is None:
            if not isinstance(message.channel, discord.DMChannel):
                return None
            if self.bot.settings.allow_dms:
                return "dm"
            raise UserFacingError(NO_DMS)
        mentioned = any(user.id == bot_id for user in message.mentions)
        resolved = message.reference.resolved if message.reference is not None else None
        replied = isinstance(resolved, discord.Message) and resolved.author.id == bot_id
        if isinstance(message.channel, discord.Thread):
            if mentioned or replied or self.bot.settings.message_content_intent:
                if await self.records.conversation(message.channel.id) is not None:
                    return "thread"
        return "chain" if mentioned or replied else None

    async def _answer_message(self, message: discord.Message, source: Source) -> None:
        said = await self.reader.said(message)
        if said.hidden:
            raise UserFacingError(CAN_NOT_READ)
        limit = self.bot.settings.max_input_chars
        if len(message.content) > limit:
            raise UserFacingError(
                f"That message is {len(message.content):,} characters long; the limit is "
                f"{limit:,}. Shorten it and try again."
            )
        guild_id = message.guild.id if message.guild is not None else None
        channel = message.channel
        with self.conversations.slots.take(guild_id), self.bot.usage.hold(message.author.id):
            async with self.conversations.locks.hold(channel.id):
                conversation = (
                    await self.records.conversation(channel.id) if source == "thread" else None
                )
                await self._answer(
                    channel,
                    upto=message,
                    owner_id=message.author.id,
                    guild_id=guild_id,
                    conversation=conversation,
                    source=source,
                    reply_to=message,
                )

    async def _refuse(self, message: discord.Message, error: BaseException) -> None:
        """Say why ``message`` gets no answer (a note), or react once the person was told."""
        text, unexpected = describe_error(error)
        if unexpected:
            error_id = secrets.token_hex(4)
            log.error(
                "error %s answering message %s (user %s, channel %s)",
                error_id,
                message.id,
                message.author.id,
                message.channel.id,
                exc_info=error,
            )
            text = (
                f"Something went wrong on my side (error id `{error_id}`). Try again; if it "
                "keeps happening, give this id to the bot's admin."
            )
        if unexpected or self.conversations.throttle.allow(message.author.id):
            await self._note(message, text)
            return
        try:
            await message.add_reaction("⏳")
        except discord.HTTPException as exc:
            log.info("could not react to message %s: %s", message.id, exc)

    async def _note(self, message: discord.Message, text: str) -> None:
        """Reply to ``message`` with the bot's ``text``, recorded as a note (not conversation)."""
        try:
            note = await send_to_channel(message.channel, text, reference=message)
        except discord.HTTPException as exc:
            log.info("could not answer message %s: %s", message.id, exc)
            return
        await self.records.record_notes(message_ids=[note.id], channel_id=message.channel.id)

    # -- answering -------------------------------------------------------------------------

    async def _answer(
        self,
        channel: discord.abc.Messageable,
        *,
        upto: discord.Message | None,
        owner_id: int,
        guild_id: int | None,
        conversation: Conversation | None,
        source: Source,
        reply_to: discord.Message | None = None,
    ) -> None:
        """Read the conversation ending at ``upto``, fit it to the model and stream the answer
        into ``channel``; the reply's placeholder is removed again if no answer came."""
        view = StopButton(owner_id)
        reply = ChannelStreamingReply(
            channel, reference=reply_to, chain=source == "chain", view=view, limit=1900
        )
        try:
            with self._active.track(view.cancel):
                await self._stream_answer(
                    channel,
                    reply,
                    view.cancel,
                    upto=upto,
                    guild_id=guild_id,
                    conversation=conversation,
                    source=source,
                )
        finally:
            view.stop()

    async def _stream_answer(
        self,
        channel: discord.abc.Messageable,
        reply: ChannelStreamingReply,
        cancel: asyncio.Event,
        *,
        upto: discord.Message | None,
        guild_id: int | None,
        conversation: Conversation | None,
        source: Source,
    ) -> None:
        registry = registry_of(self.bot)
        written: list[str] = []  # what the model wrote before a failure
        try:
            limit = self.bot.settings.chat_max_messages
            if source == "chain":
                assert upto is not None
                excerpt = await self.reader.chain(upto, limit)
            else:
                excerpt = await self.reader.history(channel, upto, limit)
            # Read before the placeholder is posted, so the history never holds it.
            first = render_reply("", note=loading_note(registry, Task.GENERATION, guild_id))
            await reply.render(first)
            counter = await registry.prompt_counter(guild_id)
            parent_id = channel.parent_id if isinstance(channel, discord.Thread) else None
            prepared = await self.conversations.prepare(
                excerpt,
                channel_id=_channel_id(channel),
                parent_id=parent_id,
                conversation=conversation,
                counter=counter,
                bot_name=self._bot_name(channel),
            )
            notes = list(prepared.notes)
            if conversation is not None and conversation.model:
                now = registry.status(Task.GENERATION, guild_id).name
                if now != conversation.model:
                    notes.append(f"now answered by {now} (was {conversation.model})")

            def final(streamed: Streamed) -> str:
                stats = streamed.stats
                # A transcript cut at the next speaker's line ended on its own.
                ending = "finished" if streamed.cut else stats.finish_reason
                footer = " · ".join(
                    [
                        f"{stats.new_tokens} tokens",
                        f"{stats.seconds:.1f} s",
                        FINISH_WORDS.get(ending, ending),
                        plain(stats.model_name),
                        *notes,
                    ]
                )
                return render_reply(streamed.text, footer)

            def failed(text: str) -> str:
                written.append(text)
                return render_reply(text, "generation failed")

            stream = registry.stream(prepared.request, guild_id, cancel)
            streamed = await stream_into(
                reply,
                stream,
                first=first,
                partial=render_reply,
                final=final,
                failed=failed,
                cut=prepared.cut,
                cancel=cancel,
            )
            if conversation is not None:
                await self.records.answered_by(conversation.thread_id, streamed.stats.model_name)
        except BaseException:
            if not any(text.strip() for text in written):
                await _delete(reply.messages)  # no answer came: leave no placeholder behind
            raise

    def _bot_name(self, channel: discord.abc.Messageable) -> str:
        guild = getattr(channel, "guild", None)
        me = guild.me if guild is not None else self.bot.user
        return me.display_name if me is not None else "assistant"


def _channel_id(channel: discord.abc.Messageable) -> int:
    channel_id = getattr(channel, "id", None)  # every channel a message is in has one
    assert isinstance(channel_id, int)
    return channel_id


async def _delete(messages: list[discord.Message]) -> None:
    for message in messages:
        try:
            await message.delete()
        except discord.HTTPException as exc:
            log.debug("could not delete placeholder %s: %s", message.id, exc)


async def setup(bot: HFCordBot) -> None:
    await bot.add_cog(Chat(bot))
