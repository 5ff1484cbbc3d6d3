"""Safe to invite anywhere, serving side, end to end on the emulator: one fair-use budget per
user across every model command, requests in flight capped, long /ask contexts read up to a cap,
servers' own models capped and falling back to the default when they break, and nothing of the
host (paths, raw exceptions) or of a model's hostile markdown reaching a message."""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.app import open_app
from bot.client import HFCordBot
from bot.settings import Settings
from bot.sim import DiscordEmulator, SimInteraction
from bot.sim.harness import connected
from models.registry import ModelRegistry
from models.results import GenerationStats
from models.specs import Task
from models.streams import GenerationStream
from tests.support import models as tiny_models
from tests.support.e2e import BotRunner
from tests.support.loaders import CountingLoader
from tests.support.waiting import wait_until

# A masked link as Discord renders one: neither bracket escaped.
MASKED_LINK = re.compile(r"(?<!\\)\[[^\]]*(?<!\\)\]\(")
# Inline code: Discord shows what is inside as typed (no links, no markdown).
CODE_SPAN = re.compile(r"`[^`\n]*`")
PHISH = "[free nitro](https://evil.example/claim)"
HOSTILE_LABELS = (PHISH, "**LOUD** `tick` ||hidden|| # head")


def visible(inter: SimInteraction) -> list[str]:
    return [m.content for m in inter.messages if not m.deleted]


async def answered(inter: SimInteraction) -> str:
    await inter.final(timeout=60)
    return inter.text


def assert_refused(inter: SimInteraction, *fragments: str) -> None:
    shown = [m for m in inter.messages if not m.deleted]
    assert len(shown) == 1 and shown[0].ephemeral, inter.describe()
    for fragment in fragments:
        assert fragment in shown[0].content, shown[0].content


def assert_no_host_path(text: str, *folders: Path) -> None:
    for folder in folders:
        assert str(folder) not in text, text
    assert "Traceback" not in text and "/tmp/" not in text, text


async def test_one_budget_covers_every_model_command_and_message_action(
    emu: DiscordEmulator, run_bot: BotRunner, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(user_budget=4, user_budget_window_s=600.0, qa_min_score=0.0)
    async with run_bot(settings):
        context = await emu.slash("context set", {"text": "The tower is in Paris."})
        await context.final()  # not a model request: free
        message = await emu.post_message(emu.channel, emu.admin, "What a lovely day")
        spend = [
            lambda: emu.slash("sentiment", {"text": "I love it"}),
            lambda: emu.slash("ner", {"text": "Ada Lovelace lived in London"}),
            lambda: emu.context_menu("Analyze sentiment", message),
            lambda: emu.slash("ask", {"question": "Where is the tower?"}),
        ]
        for send in spend:  # one after the other: the in-flight cap is not what is tested
            inter = await send()
            await inter.final(timeout=60)
            assert not inter.ephemeral, inter.describe()
        for send in [
            lambda: emu.slash("generate", {"prompt": "Once", "max_tokens": 4}),
            lambda: emu.context_menu("Find entities", message),
            lambda: emu.slash("sentiment", {"text": "once more"}),
        ]:
            inter = await send()
            await inter.final()
            assert_refused(inter, "4 model requests every 10 minutes", "Try again in")
        show = await emu.slash("context show")  # other commands are not counted
        await show.final()
        assert "Paris" in show.text
        other = await emu.slash("sentiment", {"text": "my own budget"}, user=emu.admin)
        assert "confident" in await answered(other)


async def test_a_running_generation_counts_as_in_flight_until_it_ends(
    emu: DiscordEmulator, run_bot: BotRunner, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(user_max_in_flight=1, max_new_tokens=900)
    async with run_bot(settings):
        story = await emu.slash("generate", {"prompt": "A long story", "max_tokens": 900})
        await story.wait_until(lambda i: i.original is not None and bool(i.original.buttons))
        refused = await emu.slash("sentiment", {"text": "meanwhile"})
        await refused.final()
        assert_refused(refused, "already have a model request running")
        other = await emu.slash("sentiment", {"text": "someone else"}, user=emu.admin)
        assert "confident" in await answered(other)

        assert story.original is not None
        stop = await emu.click(story.original, label="Stop")
        await stop.final()
        await story.final(timeout=60)
        after = await emu.slash("sentiment", {"text": "now it is my turn"})
        assert "confident" in await answered(after)


async def test_a_long_context_is_read_up_to_the_window_cap_and_the_answer_says_so(
    emu: DiscordEmulator, run_bot: BotRunner, make_settings: Callable[..., Settings]
) -> None:
    # 32 passages' worth of text is read whole (no retrieval), but only 2 reader windows of it.
    settings = make_settings(qa_max_windows=2, qa_min_score=0.0, ask_passages=32)
    body = " ".join(f"In year {1900 + i} the council met twice." for i in range(600))
    async with run_bot(settings):
        upload = await emu.slash("context upload", {"file": emu.attachment("long.txt", body)})
        await upload.final()
        text = await answered(await emu.slash("ask", {"question": "When did the council meet?"}))
        match = re.search(r"only its first ([\d,]+) of ([\d,]+) characters were searched", text)
        assert match is not None, text
        read, total = (int(n.replace(",", "")) for n in match.groups())
        assert 0 < read < total == len(body)

        await (await emu.slash("context remove", {"name": "long.txt"})).final()
        short = await emu.slash("context set", {"text": "The tower is in Paris."})
        await short.final()
        text = await answered(await emu.slash("ask", {"question": "Where is the tower?"}))
        assert "were searched" not in text


async def test_a_sentiment_request_is_answered_while_a_long_ask_is_still_reading(
    emu: DiscordEmulator, make_settings: Callable[..., Settings]
) -> None:
    # Retrieval finds 32 passages, read one window per pass, each pass slowed: ~32 passes.
    settings = make_settings(qa_min_score=0.0, ask_passages=32)
    specs = settings.model_specs()
    qa_dir = specs[Task.QA].model_id
    specs[Task.QA] = dataclasses.replace(specs[Task.QA], forward_batch=1)
    loader = CountingLoader(slow_forward={qa_dir: 0.08})
    registry = ModelRegistry(
        specs, allowed_roots=settings.allowed_model_roots, torch_threads=1, loader=loader
    )
    body = " ".join(["The tower stands in Paris and was finished in 1889."] * 900)
    try:
        async with open_app(settings, registry=registry) as bot:
            async with connected(emu, bot, sync_global=True):
                warm = await emu.slash("sentiment", {"text": "warming up"}, user=emu.admin)
                await warm.final(timeout=60)
                upload = await emu.slash("context upload", {"file": emu.attachment("t.txt", body)})
                await upload.final()

                ask = await emu.slash("ask", {"question": "When was the tower finished?"})
                await wait_until(lambda: loader.forwards.get(qa_dir, 0) >= 2, what="/ask reading")
                mood = await emu.slash("sentiment", {"text": "a lovely day"}, user=emu.admin)
                await mood.final(timeout=30)
                assert "confident" in mood.text
                assert loader.forwards[qa_dir] < 30, "the sentiment request waited for /ask"
                assert not any("**Q:**" in c for c in visible(ask))  # still reading
                await ask.final(timeout=60)
                assert "**Q:** When was the tower finished?" in ask.text
    finally:
        await registry.close()


@pytest.fixture(scope="module")
def server_models(tiny_models_root: Path) -> tuple[Path, Path]:
    """Two sentiment models servers promote (inside the allowed model root)."""
    first = tiny_models_root / "server-sentiment-1"
    second = tiny_models_root / "server-sentiment-2"
    if not first.exists():
        tiny_models.build_tiny_sentiment(first, seed=3, labels=("sad", "happy"))
    if not second.exists():
        tiny_models.build_tiny_sentiment(second, seed=4, labels=("meh", "wow"))
    return first, second


async def test_servers_own_models_are_capped_and_reload_on_demand_with_the_loading_note(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    make_settings: Callable[..., Settings],
    server_models: tuple[Path, Path],
) -> None:
    first, second = server_models
    async with run_bot(make_settings(max_loaded_server_models=1)) as bot:
        assert bot.registry is not None
        await bot.registry.set_guild_override(
            emu.guild.id, Task.SENTIMENT, str(first), display_name="fine-tuned job #1"
        )
        await bot.registry.set_guild_override(
            emu.other_guild.id, Task.SENTIMENT, str(second), display_name="fine-tuned job #2"
        )  # loading it unloaded job #1's model: one server model at a time
        here = await emu.slash("models")
        await here.final()
        assert "`fine-tuned job #1`" in here.text and "loads on first use" in here.text
        assert_no_host_path(here.text, first.parent)

        again = await emu.slash("sentiment", {"text": "back again"})
        await again.final(timeout=60)
        assert again.original is not None
        notes = [c for c in again.original.contents if "Loading" in c]
        assert notes and "`fine-tuned job #1`" in notes[0], again.original.contents
        assert "happy" in again.text or "sad" in again.text
        there = await emu.slash("models", channel=emu.other_channel)
        await there.final()
        assert "`fine-tuned job #2`" in there.text and "loads on first use" in there.text


async def test_a_promoted_model_that_breaks_after_start_falls_back_with_a_note_in_models(
    emu: DiscordEmulator,
    hfcord: HFCordBot,
    settings: Settings,
    tiny_sentiment_dir: Path,
    tiny_ner_dir: Path,
) -> None:
    registry = hfcord.registry
    assert registry is not None
    # As a restart restores promotions: recorded, loaded on first use.
    gone = settings.data_dir / "models" / "77"
    shutil.copytree(tiny_sentiment_dir, gone)
    await registry.set_guild_override(
        emu.guild.id, Task.SENTIMENT, str(gone), preload=False, display_name="fine-tuned job #77"
    )
    corrupt = settings.data_dir / "models" / "78"
    shutil.copytree(tiny_ner_dir, corrupt)
    await registry.set_guild_override(
        emu.guild.id, Task.NER, str(corrupt), preload=False, display_name="fine-tuned job #78"
    )
    shutil.rmtree(gone)
    (corrupt / "config.json").write_text("{ not json", encoding="utf-8")

    sentiment = await answered(await emu.slash("sentiment", {"text": "still answered"}))
    assert "POSITIVE" in sentiment or "NEGATIVE" in sentiment  # the default model's labels
    ner = await emu.slash("ner", {"text": "Ada Lovelace lived in London"})
    await ner.final(timeout=60)
    assert not ner.ephemeral, ner.describe()

    models = await emu.slash("models")
    await models.final()
    text = models.text
    for job, task in (("#77", "sentiment"), ("#78", "ner")):
        assert f"`fine-tuned job {job}`" in text
        assert f"this server's {task} requests are answered by the default model" in text
    assert "🔴" in text
    assert_no_host_path(text, settings.data_dir, tiny_sentiment_dir.parent)
    assert "not json" not in text and "JSONDecodeError" not in text


async def test_models_and_the_generate_footer_name_models_not_paths(
    emu: DiscordEmulator, hfcord: HFCordBot, tiny_models_root: Path, tiny_gpt2_dir: Path
) -> None:
    models = await emu.slash("models")
    await models.final()
    assert "`tiny-sentiment`" in models.text and "`tiny-qa`" in models.text
    assert_no_host_path(models.text, tiny_models_root)

    story = await emu.slash("generate", {"prompt": "Once upon a time", "max_tokens": 4})
    await story.final(timeout=60)
    assert story.original is not None
    footer = story.original.content.splitlines()[-1]
    assert footer.startswith("-# 4 tokens") and footer.endswith(tiny_gpt2_dir.name)
    for revision in story.original.contents:
        assert_no_host_path(revision, tiny_models_root)


async def test_a_local_model_that_fails_to_load_is_named_by_its_folder_only(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    broken = tmp_path / "operator-models" / "my-ner"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    async with run_bot(make_settings(ner_model=str(broken))):
        inter = await emu.slash("ner", {"text": "Ada Lovelace"})
        await inter.final(timeout=60)
        assert_refused(inter, "my-ner", "the bot's log has the details")
        assert_no_host_path(inter.text, tmp_path)
        models = await emu.slash("models")
        await models.final()
        assert "`my-ner`" in models.text
        assert_no_host_path(models.text, tmp_path)


@pytest.fixture(scope="module")
def hostile_models(tiny_models_root: Path) -> tuple[Path, Path]:
    """A promoted classifier and token classifier whose label names are phishing markdown."""
    sentiment = tiny_models_root / "hostile-sentiment"
    ner = tiny_models_root / "hostile-ner"
    if not sentiment.exists():
        tiny_models.build_tiny_sentiment(sentiment, labels=HOSTILE_LABELS)
    if not ner.exists():
        tags = tuple(f"{prefix}-{label}" for label in HOSTILE_LABELS for prefix in "BI")
        tiny_models.build_tiny_ner(ner, labels=("O", *tags))
    return sentiment, ner


async def test_hostile_label_names_of_a_promoted_model_are_shown_as_typed(
    emu: DiscordEmulator, hfcord: HFCordBot, hostile_models: tuple[Path, Path]
) -> None:
    sentiment, ner = hostile_models
    assert hfcord.registry is not None
    await hfcord.registry.set_guild_override(emu.guild.id, Task.SENTIMENT, str(sentiment))
    await hfcord.registry.set_guild_override(emu.guild.id, Task.NER, str(ner))

    message = await emu.post_message(emu.channel, emu.member, "Check [this](https://x.example)")
    replies = []
    for send in [
        lambda: emu.slash("sentiment", {"text": "a perfectly normal review"}),
        lambda: emu.context_menu("Analyze sentiment", message),
        lambda: emu.slash("ner", {"text": "Ada Lovelace met Charles Babbage in London"}),
    ]:
        inter = await send()
        await inter.final(timeout=60)
        assert not inter.ephemeral, inter.describe()
        replies.append(inter)
    for inter in replies:
        for content in visible(inter):
            # Entity types are shown as inline code, which no label can close early.
            assert len(re.findall(r"(?<!\\)`", content)) % 2 == 0, content
            content = CODE_SPAN.sub("", content)
            assert not MASKED_LINK.search(content), content
            assert "||hidden||" not in content and "**LOUD**" not in content, content
            assert not any(line.startswith("# ") for line in content.splitlines()), content
    assert "https://evil.example/claim" in replies[0].text  # the address shows, unmasked
    assert "https://x.example" in replies[1].text  # the user's own link, too
    assert "https://evil.example/claim" in replies[2].text


async def test_generated_markdown_cannot_mask_a_link_or_break_the_reply(
    emu: DiscordEmulator, hfcord: HFCordBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    pieces = [PHISH, " and ```", "\n# not a header\n-# not a footer ||spoiler||"]

    def generate(prompt: str, *args: Any, **kwargs: Any) -> GenerationStream:
        async def source(stream: GenerationStream) -> AsyncIterator[str]:
            for piece in pieces:
                yield piece
            stream.stats = GenerationStats(
                "".join(pieces), 3, len(pieces), 0.1, "length", "/host/path/model", "tiny-gpt2"
            )

        return GenerationStream(source)

    assert hfcord.registry is not None
    monkeypatch.setattr(hfcord.registry, "generate", generate)
    story = await emu.slash("generate", {"prompt": "[click](https://evil.example) me"})
    await story.final(timeout=60)
    assert story.original is not None
    content = story.original.content
    assert not MASKED_LINK.search(content), content
    assert "https://evil.example/claim" in content
    lines = content.splitlines()
    assert lines[-1].startswith("-# 3 tokens") and lines[-1].endswith("tiny-gpt2")
    assert "```" not in content  # no code block opened to swallow the footer
    assert [line for line in lines if line.startswith(("#", "-#"))] == [lines[-1]]
    assert "/host/path" not in content
