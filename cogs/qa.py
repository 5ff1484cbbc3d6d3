"""Per-channel question-answering contexts (/context ...) and /ask."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import HFCordBot
from bot.contexts import QAContext
from bot.errors import UserFacingError
from bot.inputs import bounded_text, note_if_loading, registry_of
from bot.reply import defer, send
from bot.text import plain, quote, sentence_around
from bot.uploads import read_text_attachment
from bot.views import Pager, paginate
from models.specs import Task

NO_CONTEXT = (
    "This channel has no context to answer from yet. Set one with `/context set` "
    "(text) or `/context upload` (a .txt or .md file), then ask again."
)


def describe(context: QAContext, *, inherited: bool = False) -> str:
    when = discord.utils.format_dt(context.created_at, "R")
    line = f"Set by <@{context.author_id}> {when} from {context.source}"
    if context.updated_by != context.author_id or context.updated_at != context.created_at:
        line += f", last added to by <@{context.updated_by}> {discord.utils.format_dt(context.updated_at, 'R')}"
    line += f" · {len(context.body):,} characters"
    if inherited:
        line += " · inherited from the parent channel"
    return line


def format_answer(
    question: str, context: QAContext, answer_text: str, score: float, start: int, end: int
) -> str:
    sentence = sentence_around(context.body, start, end)
    offset = context.body.find(sentence)
    if offset != -1 and offset <= start and end <= offset + len(sentence):
        a, b = start - offset, end - offset
        shown = plain(sentence[:a]) + "**" + plain(sentence[a:b]) + "**" + plain(sentence[b:])
    else:
        shown = plain(sentence)
    return (
        f"**Q:** {plain(question)}\n"
        f"**A:** {plain(answer_text)} ({score:.0%} confident)\n"
        f"{quote(shown)}"
    )


def read_note(context: QAContext, read_chars: int | None) -> str:
    """A line saying how much of a long context one question could read ("" if all of it)."""
    if read_chars is None or read_chars >= len(context.body):
        return ""
    return (
        f"\n-# This context is long: only its first {read_chars:,} of {len(context.body):,} "
        "characters were searched for this answer."
    )


class QuestionAnswering(commands.Cog):
    context = app_commands.Group(
        name="context",
        description="The text this channel's /ask answers from",
        guild_only=True,
    )

    def __init__(self, bot: HFCordBot) -> None:
        self.bot = bot
        self.contexts = bot.contexts

    async def effective_context(
        self, interaction: discord.Interaction[HFCordBot]
    ) -> tuple[QAContext | None, bool]:
        """This channel's context, or for a thread without one its parent channel's."""
        assert interaction.channel_id is not None
        return await self.contexts.effective(interaction.channel_id, _parent_id(interaction))

    @context.command(name="set")
    @app_commands.describe(text="The text questions in this channel will be answered from")
    async def context_set(self, interaction: discord.Interaction[HFCordBot], text: str) -> None:
        """Set this channel's context (replaces the current one)."""
        assert interaction.channel_id is not None
        text = bounded_text(text, self.bot.settings.context_max_chars, what="context")
        stored = await self.contexts.set(
            channel_id=interaction.channel_id,
            guild_id=interaction.guild_id,
            body=text,
            source="text",
            author_id=interaction.user.id,
            may_manage=interaction.permissions.manage_messages,
        )
        await send(
            interaction,
            f"Context set ({len(stored.body):,} characters). Anyone here can now `/ask` about it.",
        )

    @context.command(name="append")
    @app_commands.describe(text="Text to add at the end of this channel's context")
    async def context_append(self, interaction: discord.Interaction[HFCordBot], text: str) -> None:
        """Add text to this channel's context."""
        assert interaction.channel_id is not None
        text = bounded_text(text, self.bot.settings.context_max_chars, what="text")
        appended = await self.contexts.append(
            channel_id=interaction.channel_id,
            guild_id=interaction.guild_id,
            body=text,
            source="text",
            author_id=interaction.user.id,
            parent_id=_parent_id(interaction),
        )
        size = len(appended.context.body)
        if appended.copied_parent:
            text = (
                "Added. This thread now has its own context: the parent channel's, with your "
                f"text at the end ({size:,} characters). The parent channel's is unchanged."
            )
        else:
            text = f"Added. The context is now {size:,} characters."
        await send(interaction, text)

    @context.command(name="upload")
    @app_commands.describe(file="A .txt or .md file (UTF-8) to use as this channel's context")
    async def context_upload(
        self, interaction: discord.Interaction[HFCordBot], file: discord.Attachment
    ) -> None:
        """Set this channel's context from a text file."""
        assert interaction.channel_id is not None
        await defer(interaction)
        text = await read_text_attachment(file, max_bytes=self.bot.settings.upload_max_bytes)
        text = bounded_text(text, self.bot.settings.context_max_chars, what="file's text")
        stored = await self.contexts.set(
            channel_id=interaction.channel_id,
            guild_id=interaction.guild_id,
            body=text,
            source=f"file {file.filename}",
            author_id=interaction.user.id,
            may_manage=interaction.permissions.manage_messages,
        )
        await send(
            interaction,
            f"Context set from `{file.filename}` ({len(stored.body):,} characters). "
            "Anyone here can now `/ask` about it.",
        )

    @context.command(name="show")
    async def context_show(self, interaction: discord.Interaction[HFCordBot]) -> None:
        """Show this channel's context, page by page."""
        assert interaction.channel_id is not None
        context, inherited = await self.effective_context(interaction)
        if context is None:
            raise UserFacingError(NO_CONTEXT)
        pages = paginate(context.body)
        view = Pager(
            pages,
            owner_id=interaction.user.id,
            header=describe(context, inherited=inherited) + "\n",
        )
        await send(
            interaction, view.render(), ephemeral=True, view=view if len(pages) > 1 else None
        )

    @context.command(name="clear")
    async def context_clear(self, interaction: discord.Interaction[HFCordBot]) -> None:
        """Remove this channel's context (its author, or anyone with Manage Messages)."""
        assert interaction.channel_id is not None
        await self.contexts.clear(
            interaction.channel_id,
            user_id=interaction.user.id,
            may_manage=interaction.permissions.manage_messages,
        )
        await send(interaction, "This channel's context is cleared.")

    @app_commands.command(name="ask")
    @app_commands.describe(question="A question about this channel's context")
    async def ask(self, interaction: discord.Interaction[HFCordBot], question: str) -> None:
        """Answer a question from this channel's context, quoting where the answer is."""
        with self.bot.usage.hold(interaction.user.id):
            await self._ask(interaction, question)

    async def _ask(self, interaction: discord.Interaction[HFCordBot], question: str) -> None:
        assert interaction.channel_id is not None
        question = bounded_text(question, 500, what="question")
        await defer(interaction)
        context, _ = await self.effective_context(interaction)
        if context is None:
            raise UserFacingError(NO_CONTEXT)
        registry = registry_of(self.bot)
        await note_if_loading(interaction, registry, Task.QA)
        result = await registry.answer(question, context.body, guild_id=interaction.guild_id)
        note = read_note(context, result.read_chars)
        best = result.best
        if best is None or best.is_empty or best.score < self.bot.settings.qa_min_score:
            await send(
                interaction,
                f"**Q:** {plain(question)}\n"
                "Not found in this channel's context. Try rephrasing, or add the information "
                "with `/context append`." + note,
            )
            return
        await send(
            interaction,
            format_answer(question, context, best.text, best.score, best.start, best.end) + note,
        )


def _parent_id(interaction: discord.Interaction[HFCordBot]) -> int | None:
    channel = interaction.channel
    return channel.parent_id if isinstance(channel, discord.Thread) else None


async def setup(bot: HFCordBot) -> None:
    await bot.add_cog(QuestionAnswering(bot))
