"""Documents end to end: the real bot on the emulator, tiny local models (reader, embeddings).

Uploads of each kind, list, show, remove and clear with their rules, the limits, a thread
reading its parent's documents, answers naming their document, and the short-channel path
answering exactly as `/ask` did before documents (the registry's answer over the whole text).
"""

from __future__ import annotations

from collections.abc import Callable

import discord
import pytest

from bot.client import HFCordBot
from bot.settings import Settings
from bot.sim import DiscordEmulator, SimInteraction
from tests.support.documents import minimal_pdf
from tests.support.e2e import BotRunner


async def _run(
    emu: DiscordEmulator, command: str, options: dict | None = None, **kw: object
) -> SimInteraction:
    inter = await emu.slash(command, options or {}, **kw)  # type: ignore[arg-type]
    await inter.final(timeout=60)
    return inter


def private(inter: SimInteraction) -> bool:
    """Whether the interaction's only remaining message is visible to the user alone."""
    shown = [m for m in inter.messages if not m.deleted]
    return len(shown) == 1 and shown[0].ephemeral


@pytest.fixture
def answering_settings(make_settings: Callable[..., Settings]) -> Settings:
    # A tiny QA model's confidence is noise; a threshold of 0 always shows its best span.
    return make_settings(qa_min_score=0.0)


async def test_each_kind_of_file_is_added_listed_and_shown(
    emu: DiscordEmulator, hfcord: HFCordBot
) -> None:
    files = {
        "notes.txt": "The sky is blue.\n",
        "guide.md": "# Guide\n\nGrass is green.\n",
        "tower.pdf": minimal_pdf(["The Eiffel Tower is in Paris.", "It was finished in 1889."]),
        "page.html": "<html><body><h1>Rivers</h1><p>The Seine runs through Paris.</p></body></html>",
    }
    for name, data in files.items():
        added = await _run(
            emu, "context upload", {"file": emu.attachment(name, data)}, user=emu.member
        )
        assert f"Added `{name}`" in added.text, added.describe()
    listed = await _run(emu, "context list")
    assert private(listed) and "Documents in this channel**: 4" in listed.text
    for name in files:
        assert f"`{name}` · added by <@{emu.member.id}>" in listed.text
    shown = await _run(emu, "context show", {"name": "tower.pdf"})
    assert "The Eiffel Tower is in Paris.\n\nIt was finished in 1889." in shown.text
    assert "from file tower.pdf" in shown.text
    html = await _run(emu, "context show", {"name": "page.html"})
    assert "Rivers\n\nThe Seine runs through Paris." in html.text and "<p>" not in html.text


async def test_unreadable_uploads_are_refused_with_a_sentence(
    emu: DiscordEmulator, run_bot: BotRunner, make_settings: Callable[..., Settings]
) -> None:
    async with run_bot(make_settings(upload_max_bytes=2000, context_max_chars=100)):
        for name, data, expected in (
            ("table.csv", "a,b\n1,2\n", "Upload a .htm or .html or .markdown or .md or .pdf"),
            ("big.txt", "x" * 3000, "the limit is 2 KB"),
            ("broken.pdf", b"%PDF-1.4\nnot really", "not a PDF I can read"),
            ("scan.pdf", minimal_pdf([""]), "no text to read"),
            ("long.txt", "y" * 150, "150 characters long; the limit is 100"),
        ):
            refused = await _run(emu, "context upload", {"file": emu.attachment(name, data)})
            assert private(refused) and expected in refused.text, (name, refused.text)
        assert "no context to answer from" in (await _run(emu, "context list")).text


async def test_the_limit_is_the_channels_total(
    emu: DiscordEmulator, run_bot: BotRunner, make_settings: Callable[..., Settings]
) -> None:
    async with run_bot(make_settings(context_max_chars=40)):
        await _run(emu, "context upload", {"file": emu.attachment("a.txt", "a" * 30)})
        refused = await _run(emu, "context upload", {"file": emu.attachment("b.txt", "b" * 20)})
        assert private(refused) and "50 characters long; the limit is 40" in refused.text
        removed = await _run(emu, "context remove", {"name": "a.txt"})
        assert "Removed `a.txt`" in removed.text
        added = await _run(emu, "context upload", {"file": emu.attachment("b.txt", "b" * 20)})
        assert "Added `b.txt`" in added.text


async def test_removing_is_for_the_author_or_message_managers(
    emu: DiscordEmulator, hfcord: HFCordBot
) -> None:
    await _run(emu, "context upload", {"file": emu.attachment("mine.md", "Mine.")}, user=emu.member)
    stranger = emu.add_user("stranger", guilds=[emu.guild])
    await _run(
        emu, "context upload", {"file": emu.attachment("theirs.md", "Theirs.")}, user=stranger
    )
    refused = await _run(emu, "context remove", {"name": "mine.md"}, user=stranger)
    assert private(refused) and "Manage Messages permission can remove it" in refused.text
    not_all = await _run(emu, "context clear", user=stranger)
    assert private(not_all) and "can clear them all" in not_all.text
    gone = await _run(emu, "context remove", {"name": "theirs.md"}, user=stranger)
    assert "Removed `theirs.md`" in gone.text
    cleared = await _run(emu, "context clear", user=emu.admin)  # Administrator implies it
    assert "cleared (1 document(s))" in cleared.text


async def test_a_thread_reads_its_parents_documents(
    emu: DiscordEmulator, run_bot: BotRunner, answering_settings: Settings
) -> None:
    async with run_bot(answering_settings):
        await _run(
            emu, "context upload", {"file": emu.attachment("tower.md", "The tower is in Paris.")}
        )
        listed = await _run(emu, "context list", channel=emu.thread)
        assert "Documents in the parent channel" in listed.text and "`tower.md`" in listed.text
        asked = await _run(emu, "ask", {"question": "Where is the tower?"}, channel=emu.thread)
        assert "-# from `tower.md`" in asked.text
        assert asked.original is not None and asked.original.channel is emu.thread
        # Adding in the thread keeps the parent's document there, and the parent unchanged.
        added = await _run(
            emu, "context upload", {"file": emu.attachment("extra.md", "More.")}, channel=emu.thread
        )
        assert "its parent channel's, and this one" in added.text
        in_thread = await _run(emu, "context list", channel=emu.thread)
        assert "Documents in this channel**: 2" in in_thread.text
        parent = await _run(emu, "context list")
        assert "Documents in this channel**: 1" in parent.text and "extra.md" not in parent.text


async def test_a_short_channel_is_answered_exactly_as_before_documents(
    emu: DiscordEmulator, run_bot: BotRunner, answering_settings: Settings
) -> None:
    body = "The Eiffel Tower is in Paris. It was finished in 1889 for the World's Fair."
    question = "When was the tower finished?"
    async with run_bot(answering_settings) as bot:
        await _run(emu, "context set", {"text": body})
        asked = await _run(emu, "ask", {"question": question})
        assert bot.registry is not None
        # What /ask computed before documents: the reader over the whole context.
        before = (await bot.registry.answer(question, body, guild_id=emu.guild.id)).best
    assert before is not None
    lines = asked.text.splitlines()
    assert lines[0] == f"**Q:** {question}"
    assert lines[1] == (
        f"**A:** {discord.utils.escape_markdown(before.text)} ({before.score:.0%} confident)"
    )
    assert lines[-1] == "-# from `notes`"


async def test_a_long_channel_is_searched_and_the_answer_names_its_document(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    make_settings: Callable[..., Settings],
) -> None:
    topics = ["volcanoes", "glaciers", "deserts", "rainforests", "coral reefs"]
    documents = {
        f"{topic.replace(' ', '-')}.txt": "\n\n".join(
            f"Paragraph {i} on {topic}: {topic} are studied by people who like {topic} a lot."
            + " Filler sentence for length." * 12
            for i in range(10)
        )
        for topic in topics
    }
    async with run_bot(make_settings(qa_min_score=0.0, ask_passages=2)) as bot:
        # discord.py loads cogs as fresh module objects: set the loaded cog's own attribute.
        cog = bot.get_cog("QuestionAnswering")
        assert cog is not None and hasattr(cog, "progress_every_s")
        setattr(cog, "progress_every_s", 0.0)  # every batch  # noqa: B010
        for name, text in documents.items():
            added = await _run(emu, "context upload", {"file": emu.attachment(name, text)})
            assert f"Added `{name}`" in added.text
        # Hundreds of passages: indexing them edits a progress line.
        big = "\n\n".join(f"Log entry {i}: all quiet." + " Nothing else." * 25 for i in range(200))
        uploaded = await _run(emu, "context upload", {"file": emu.attachment("all.txt", big)})
        assert uploaded.original is not None
        assert any("Indexing `all.txt`" in r.content for r in uploaded.original.revisions), [
            r.content for r in uploaded.original.revisions
        ]
        await _run(emu, "context remove", {"name": "all.txt"})
        asked = await _run(emu, "ask", {"question": "Who studies glaciers?"})
    lines = asked.text.splitlines()
    assert lines[-1].startswith("-# from `") and lines[1].startswith("**A:** ")
    named = lines[-1].removeprefix("-# from `").removesuffix("`")
    answer = lines[1].removeprefix("**A:** ").rsplit(" (", 1)[0]
    assert named in documents and discord.utils.remove_markdown(answer) in documents[named]
