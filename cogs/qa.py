"""Each channel's documents (/context ...) and /ask, which answers from them."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from pathlib import PurePath

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import HFCordBot
from bot.contexts import NOTES, Library
from bot.documents.index import DocumentInfo
from bot.documents.parsing import DOCUMENT_SUFFIXES, DocumentRefused, document_text
from bot.documents.reading import Found, PartlyRead, read
from bot.errors import UserFacingError
from bot.inputs import bounded_text, note_if_loading, registry_of
from bot.isolation import IsolationError, IsolationLimits, run_isolated
from bot.reply import defer, send, show_progress
from bot.text import clip, code_span, plain, quote
from bot.uploads import UploadError, fetch_attachment
from bot.views import Pager, paginate
from models.specs import Task

NO_CONTEXT = (
    "This channel has no context to answer from yet. Add text with `/context set`, or a "
    ".txt, .md, .pdf or .html file with `/context upload`, then ask again."
)
# `/context show` pages through at most this much of a document.
SHOW_MAX_CHARS = 200_000
_NAME_UNSAFE = re.compile(r"[\x00-\x1f\x7f`*_~|<>@#:\\]+")


def document_name(filename: str) -> str:
    """A document's name from an uploaded file's: no folders, markdown or mentions, 100 chars."""
    name = _NAME_UNSAFE.sub(" ", PurePath(filename.replace("\\", "/")).name)
    name = " ".join(name.split())
    if len(name) > 100:  # keep the suffix: it says what kind of document it is
        suffix = PurePath(name).suffix[:10]
        name = name[: 100 - len(suffix)].rstrip() + suffix
    return name.strip() or "document"


def _when(moment: object) -> str:
    return discord.utils.format_dt(moment, "R")  # type: ignore[arg-type]


def describe(document: DocumentInfo, *, inherited: bool = False) -> str:
    """One line about a document: who added it and when, from what, how long it is."""
    line = f"`{document.name}` · added by <@{document.author_id}> {_when(document.created_at)}"
    if document.source != "text":
        line += f" from {plain(document.source)}"
    if document.updated_by != document.author_id or document.updated_at != document.created_at:
        line += f", last added to by <@{document.updated_by}> {_when(document.updated_at)}"
    line += f" · {document.chars:,} characters"
    if inherited:
        line += " · inherited from the parent channel"
    return line


def format_list(library: Library, max_chars: int) -> str:
    """The documents of a channel, one line each."""
    where = "the parent channel" if library.inherited else "this channel"
    lines = [
        f"**Documents in {where}**: {len(library.documents)}, "
        f"{library.chars:,} of {max_chars:,} characters"
    ]
    lines.extend(f"• {describe(document)}" for document in library.documents)
    if library.inherited:
        lines.append("-# This thread has none of its own; it reads its parent channel's.")
    return "\n".join(lines)


def format_answer(question: str, found: Found) -> str:
    """The answer with its confidence, the sentence it came from (answer in bold), and the
    document it is in."""
    sentence = found.quote.sentence
    a, b = found.quote.answer_start, found.quote.answer_end
    if a is not None and b is not None:
        shown = plain(sentence[:a]) + "**" + plain(sentence[a:b]) + "**" + plain(sentence[b:])
    else:
        shown = plain(sentence)
    return (
        f"**Q:** {plain(question)}\n"
        f"**A:** {plain(found.text)} ({found.score:.0%} confident)\n"
        f"{quote(shown)}\n"
        f"-# from {code_span(found.document)}"
    )


def partly_read_note(partly_read: Sequence[PartlyRead]) -> str:
    """Says which documents were too long for one reading (``HFCORD_QA_MAX_WINDOWS``)."""
    if not partly_read:
        return ""
    first = partly_read[0]
    more = f" (and {len(partly_read) - 1} more)" if len(partly_read) > 1 else ""
    return (
        f"\n-# {code_span(first.document)} is long: only its first {first.read_chars:,} of "
        f"{first.total_chars:,} characters were searched{more}."
    )


class QuestionAnswering(commands.Cog):
    context = app_commands.Group(
        name="context",
        description="The documents this channel's /ask answers from",
        guild_only=True,
    )

    # An upload of at least this many passages edits a progress line, at most this often.
    progress_min_passages = 32
    progress_every_s = 1.5

    def __init__(self, bot: HFCordBot) -> None:
        self.bot = bot
        self.contexts = bot.contexts

    async def library(self, interaction: discord.Interaction[HFCordBot]) -> Library | None:
        """This channel's documents, or for a thread without any its parent channel's."""
        assert interaction.channel_id is not None
        return await self.contexts.library(interaction.channel_id, _parent_id(interaction))

    @context.command(name="set")
    @app_commands.describe(text="The text questions in this channel will be answered from")
    async def context_set(self, interaction: discord.Interaction[HFCordBot], text: str) -> None:
        """Set this channel's notes (replaces them; other documents stay)."""
        assert interaction.channel_id is not None
        text = bounded_text(text, self.bot.settings.context_max_chars, what="context")
        written = await self.contexts.set_notes(
            channel_id=interaction.channel_id,
            guild_id=interaction.guild_id,
            text=text,
            author_id=interaction.user.id,
            may_manage=interaction.permissions.manage_messages,
            parent_id=_parent_id(interaction),
        )
        reply = f"Context set ({written.document.chars:,} characters, in `{NOTES}`)."
        if written.copied_parent:
            reply += (
                " This thread now has its own documents: its parent channel's, with these notes."
            )
        await send(interaction, reply + " Anyone here can now `/ask` about it.")

    @context.command(name="append")
    @app_commands.describe(text="Text to add at the end of this channel's notes")
    async def context_append(self, interaction: discord.Interaction[HFCordBot], text: str) -> None:
        """Add text to this channel's notes."""
        assert interaction.channel_id is not None
        text = bounded_text(text, self.bot.settings.context_max_chars, what="text")
        written = await self.contexts.append_notes(
            channel_id=interaction.channel_id,
            guild_id=interaction.guild_id,
            text=text,
            author_id=interaction.user.id,
            parent_id=_parent_id(interaction),
        )
        size = written.document.chars
        if written.copied_parent:
            reply = (
                "Added. This thread now has its own documents: the parent channel's, with your "
                f"text at the end of `{NOTES}` ({size:,} characters). The parent channel's is "
                "unchanged."
            )
        else:
            reply = f"Added. `{NOTES}` is now {size:,} characters."
        await send(interaction, reply)

    @context.command(name="upload")
    @app_commands.describe(
        file="A .txt, .md, .pdf or .html file to add to this channel's documents"
    )
    async def context_upload(
        self, interaction: discord.Interaction[HFCordBot], file: discord.Attachment
    ) -> None:
        """Add a document (.txt, .md, .pdf, .html) to this channel; one of the same name is replaced."""
        assert interaction.channel_id is not None
        await defer(interaction)
        settings = self.bot.settings
        name = document_name(file.filename)
        data = await fetch_attachment(
            file, max_bytes=settings.upload_max_bytes, suffixes=DOCUMENT_SUFFIXES
        )
        limits = IsolationLimits(
            memory_mb=settings.parse_memory_mb, timeout_s=settings.parse_timeout_s
        )
        try:
            text = await asyncio.to_thread(
                run_isolated,
                document_text,
                data,
                name,
                limits=limits,
                refusals=(DocumentRefused,),
            )
        except DocumentRefused as exc:
            raise UploadError(str(exc)) from None
        except IsolationError as exc:
            raise UploadError(exc.sentence(f"`{name}`", advice="try a smaller file")) from None
        text = bounded_text(text, settings.context_max_chars, what="file's text")
        written = await self.contexts.add(
            channel_id=interaction.channel_id,
            guild_id=interaction.guild_id,
            name=name,
            text=text,
            source=f"file {clip(file.filename, 120)}",
            author_id=interaction.user.id,
            may_manage=interaction.permissions.manage_messages,
            parent_id=_parent_id(interaction),
        )
        if self.bot.registry is not None:
            await note_if_loading(interaction, self.bot.registry, Task.EMBEDDING)
        loop = asyncio.get_running_loop()
        shown_at = loop.time()

        async def progress(done: int, total: int) -> None:
            nonlocal shown_at
            due = loop.time() - shown_at >= self.progress_every_s
            if total >= self.progress_min_passages and due:
                shown_at = loop.time()
                await show_progress(
                    interaction, f"⏳ Indexing `{name}`: {done:,} of {total:,} passages…"
                )

        outcome = await self.contexts.embed(written.document.id, progress)
        reply = f"Added `{name}` ({written.document.chars:,} characters)."
        if written.copied_parent:
            reply += " This thread now has its own documents: its parent channel's, and this one."
        if outcome.problem is not None:
            reply += " Until the embedding model is available, it is searched by its words only."
        await send(interaction, reply + " Anyone here can now `/ask` about it.")

    @context.command(name="list")
    async def context_list(self, interaction: discord.Interaction[HFCordBot]) -> None:
        """List this channel's documents: names, sizes, who added them and when."""
        library = await self.library(interaction)
        if library is None:
            raise UserFacingError(NO_CONTEXT)
        pages = paginate(format_list(library, self.bot.settings.context_max_chars))
        view = Pager(pages, owner_id=interaction.user.id)
        await send(
            interaction, view.render(), ephemeral=True, view=view if len(pages) > 1 else None
        )

    @context.command(name="show")
    @app_commands.describe(name="The document to show (default: the only one, or the notes)")
    async def context_show(
        self, interaction: discord.Interaction[HFCordBot], name: str | None = None
    ) -> None:
        """Show one of this channel's documents, page by page."""
        library = await self.library(interaction)
        if library is None:
            raise UserFacingError(NO_CONTEXT)
        document = await self.contexts.document(library, name)
        if document is None:
            names = ", ".join(f"`{d.name}`" for d in library.documents)
            raise UserFacingError(f"Name the document to show: {names}.")
        body = document.body
        header = describe(document.info, inherited=library.inherited) + "\n"
        if len(body) > SHOW_MAX_CHARS:
            header += f"-# the first {SHOW_MAX_CHARS:,} characters\n"
            body = body[:SHOW_MAX_CHARS]
        pages = paginate(body)
        view = Pager(pages, owner_id=interaction.user.id, header=header)
        await send(
            interaction, view.render(), ephemeral=True, view=view if len(pages) > 1 else None
        )

    @context.command(name="remove")
    @app_commands.describe(name="The document to remove (see /context list)")
    async def context_remove(self, interaction: discord.Interaction[HFCordBot], name: str) -> None:
        """Remove one of this channel's documents (its author, or anyone with Manage Messages)."""
        assert interaction.channel_id is not None
        removed = await self.contexts.remove(
            interaction.channel_id,
            name.strip(),
            user_id=interaction.user.id,
            may_manage=interaction.permissions.manage_messages,
        )
        await send(interaction, f"Removed `{removed.name}` ({removed.chars:,} characters).")

    @context.command(name="clear")
    async def context_clear(self, interaction: discord.Interaction[HFCordBot]) -> None:
        """Remove all this channel's documents (their authors, or anyone with Manage Messages)."""
        assert interaction.channel_id is not None
        removed = await self.contexts.clear(
            interaction.channel_id,
            user_id=interaction.user.id,
            may_manage=interaction.permissions.manage_messages,
        )
        await send(interaction, f"This channel's context is cleared ({len(removed)} document(s)).")

    @app_commands.command(name="ask")
    @app_commands.describe(question="A question about this channel's documents")
    async def ask(self, interaction: discord.Interaction[HFCordBot], question: str) -> None:
        """Answer a question from this channel's documents, quoting where the answer is."""
        with self.bot.usage.hold(interaction.user.id):
            await self._ask(interaction, question)

    async def _ask(self, interaction: discord.Interaction[HFCordBot], question: str) -> None:
        assert interaction.channel_id is not None
        question = bounded_text(question, 500, what="question")
        await defer(interaction)
        library = await self.library(interaction)
        if library is None:
            raise UserFacingError(NO_CONTEXT)
        registry = registry_of(self.bot)
        await note_if_loading(interaction, registry, Task.QA)
        sources = await self.contexts.sources(library, question)
        reading = await read(registry, question, sources.items, guild_id=interaction.guild_id)
        best = reading.best
        if best is None or best.score < self.bot.settings.qa_min_score:
            reply = (
                f"**Q:** {plain(question)}\n"
                "Not found in this channel's documents. Try rephrasing, or add the information "
                "with `/context append` or `/context upload`."
            )
        else:
            reply = format_answer(question, best)
            if sources.lexical_only:
                reply += " · found by its words only (the embedding model is not available)"
        await send(interaction, reply + partly_read_note(reading.partly_read))


def _parent_id(interaction: discord.Interaction[HFCordBot]) -> int | None:
    channel = interaction.channel
    return channel.parent_id if isinstance(channel, discord.Thread) else None


async def setup(bot: HFCordBot) -> None:
    await bot.add_cog(QuestionAnswering(bot))
