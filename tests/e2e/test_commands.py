"""Every command of the real cogs, run by emulated users against tiny local models.

Tiny models have random weights: tests assert on the shape of the answers (labels, sections,
footers), not on their quality.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.client import HFCordBot
from bot.settings import Settings
from bot.sim import DiscordEmulator, SimInteraction
from tests.support.e2e import BotRunner


def assert_deferred_then_answered(inter: SimInteraction) -> None:
    assert inter.response_type == 5, inter.describe()
    assert inter.original is not None and inter.original.contents[0] == ""
    assert inter.rejected == [], inter.describe()


async def test_sentiment_command_and_message_action(
    emu: DiscordEmulator, hfcord: HFCordBot
) -> None:
    inter = await emu.slash("sentiment", {"text": "I love this"})
    await inter.final()
    assert_deferred_then_answered(inter)
    assert "confident" in inter.text and ("POSITIVE" in inter.text or "NEGATIVE" in inter.text)

    message = await emu.post_message(emu.channel, emu.admin, "What a terrible day")
    menu = await emu.context_menu("Analyze sentiment", message)
    await menu.final()
    assert_deferred_then_answered(menu)
    assert "What a terrible day" in menu.text and "confident" in menu.text


async def test_ner_command_and_message_action(emu: DiscordEmulator, hfcord: HFCordBot) -> None:
    inter = await emu.slash("ner", {"text": "Ada Lovelace was born in London"})
    await inter.final()
    assert_deferred_then_answered(inter)
    assert "**Entities**" in inter.text or "no named entities" in inter.text

    message = await emu.post_message(emu.thread, emu.member, "Grace Hopper worked at Harvard")
    menu = await emu.context_menu("Find entities", message)
    await menu.final()
    assert_deferred_then_answered(menu)
    assert menu.original is not None and menu.original.channel is emu.thread


async def test_context_menu_on_a_message_without_text_explains(
    emu: DiscordEmulator, hfcord: HFCordBot
) -> None:
    picture = emu.attachment("cat.png", b"\x89PNG\r\n\x1a\n" + bytes(16))
    message = await emu.post_message(emu.channel, emu.member, "", attachments=[picture])
    inter = await emu.context_menu("Analyze sentiment", message)
    await inter.final()
    (shown,) = [m for m in inter.messages if not m.deleted]
    assert shown.ephemeral and "no text" in shown.content


@pytest.fixture
def answering_settings(make_settings: Callable[..., Settings]) -> Settings:
    # A tiny QA model's confidence is noise; a threshold of 0 always shows its best span.
    return make_settings(qa_min_score=0.0)


async def test_context_then_ask_with_thread_fallback(
    emu: DiscordEmulator, run_bot: BotRunner, answering_settings: Settings
) -> None:
    async with run_bot(answering_settings):
        no_context = await emu.slash("ask", {"question": "Where is it?"})
        await no_context.final()
        assert "/context set" in no_context.text

        context = "The Eiffel Tower is in Paris. It was finished in 1889."
        set_ = await emu.slash("context set", {"text": context}, user=emu.member)
        await set_.final()
        assert "Context set" in set_.text

        in_thread = await emu.slash("ask", {"question": "Where is the tower?"}, channel=emu.thread)
        await in_thread.final()
        assert_deferred_then_answered(in_thread)
        assert "Where is the tower?" in in_thread.text
        assert in_thread.original is not None and in_thread.original.channel is emu.thread

        shown = await emu.slash("context show", channel=emu.thread)
        await shown.final()
        assert shown.ephemeral and "Eiffel Tower" in shown.text

        elsewhere = await emu.slash("ask", {"question": "Where?"}, channel=emu.other_channel)
        await elsewhere.final()
        assert "/context set" in elsewhere.text  # contexts are per channel


async def test_context_upload_accepts_text_and_refuses_binary(
    emu: DiscordEmulator, hfcord: HFCordBot
) -> None:
    good = await emu.slash(
        "context upload", {"file": emu.attachment("notes.md", "# Notes\nThe sky is blue.\n")}
    )
    await good.final()
    assert_deferred_then_answered(good)
    assert "notes.md" in good.text

    binary = await emu.slash(
        "context upload", {"file": emu.attachment("blob.txt", bytes(range(256)) * 4)}
    )
    await binary.final()
    (refusal,) = [m for m in binary.messages if not m.deleted]
    assert refusal.ephemeral


async def test_context_clear_is_for_its_author_or_message_managers(
    emu: DiscordEmulator, hfcord: HFCordBot
) -> None:
    await (await emu.slash("context set", {"text": "Rules: be kind."}, user=emu.member)).final()
    stranger = emu.add_user("stranger", guilds=[emu.guild])
    refused = await emu.slash("context clear", user=stranger)
    await refused.final()
    assert refused.ephemeral and "Manage Messages" in refused.text
    cleared = await emu.slash("context clear", user=emu.admin)  # Administrator implies it
    await cleared.final()
    assert "cleared" in cleared.text


async def test_replacing_someone_elses_context_needs_its_author_or_message_managers(
    emu: DiscordEmulator, hfcord: HFCordBot
) -> None:
    await (await emu.slash("context set", {"text": "Rules: be kind."}, user=emu.member)).final()
    rules = emu.attachment("rules.txt", "Rules: be kind.")
    await (await emu.slash("context upload", {"file": rules}, user=emu.member)).final()
    stranger = emu.add_user("stranger", guilds=[emu.guild])
    for command, options in (
        ("context set", {"text": "Rules: anything goes."}),
        ("context upload", {"file": emu.attachment("rules.txt", "Rules: none.")}),
    ):
        refused = await emu.slash(command, options, user=stranger)
        await refused.final()
        assert "only they or members with the Manage Messages" in refused.text, command
    kept = await emu.slash("context show", user=stranger)
    await kept.final()
    assert "Rules: be kind." in kept.text
    # Appending is not replacing: anyone may add, and the author stays the author.
    added = await emu.slash("context append", {"text": "Be brief."}, user=stranger)
    await added.final()
    assert "Added." in added.text
    again = await emu.slash("context set", {"text": "Rules: be kind, always."}, user=emu.member)
    await again.final()
    assert "Context set" in again.text
    by_admin = await emu.slash("context set", {"text": "Rules: by the admin."}, user=emu.admin)
    await by_admin.final()
    assert "Context set" in by_admin.text


async def test_appending_in_a_thread_keeps_the_parent_context_visible(
    emu: DiscordEmulator, hfcord: HFCordBot
) -> None:
    await (await emu.slash("context set", {"text": "The sky is blue."})).final()
    added = await emu.slash("context append", {"text": "Grass is green."}, channel=emu.thread)
    await added.final()
    assert "parent channel's is unchanged" in added.text
    in_thread = await emu.slash("context show", channel=emu.thread)
    await in_thread.final()
    assert "The sky is blue." in in_thread.text and "Grass is green." in in_thread.text
    assert "inherited" not in in_thread.text
    parent = await emu.slash("context show")
    await parent.final()
    assert "The sky is blue." in parent.text and "Grass is green." not in parent.text


async def test_contexts_survive_a_restart(
    emu: DiscordEmulator, run_bot: BotRunner, settings: Settings
) -> None:
    async with run_bot(settings):
        await (await emu.slash("context set", {"text": "Saved across restarts."})).final()
    async with run_bot(settings):
        shown = await emu.slash("context show")
        await shown.final()
        assert "Saved across restarts." in shown.text
    assert emu.hub.identify_count == 2


async def test_generate_streams_edits_and_ends_with_a_footer(
    emu: DiscordEmulator, hfcord: HFCordBot
) -> None:
    inter = await emu.slash("generate", {"prompt": "Once upon a time", "max_tokens": 12})
    await inter.final(timeout=60)
    assert_deferred_then_answered(inter)
    original = inter.original
    assert original is not None
    assert len(original.revisions) >= 3  # thinking, first render with Stop, final text
    assert [b.label for b in original.revisions[1].buttons] == ["Stop"]
    assert original.buttons == []  # Stop is gone once the reply is final
    assert "**Once upon a time**" in original.content and "12 tokens" in original.content


async def test_generate_stop_button_is_for_the_asker(
    emu: DiscordEmulator, run_bot: BotRunner, make_settings: Callable[..., Settings]
) -> None:
    async with run_bot(make_settings(max_new_tokens=900)):
        inter = await emu.slash(
            "generate", {"prompt": "A long story", "max_tokens": 900}, user=emu.member
        )
        await inter.wait_until(
            lambda i: i.original is not None and bool(i.original.buttons), timeout=30
        )
        assert inter.original is not None
        stranger = emu.add_user("stranger", guilds=[emu.guild])
        refused = await emu.click(inter.original, label="Stop", user=stranger)
        await refused.final()
        assert refused.original is not None and refused.original.ephemeral
        assert "Only the person who started" in refused.original.content

        stop = await emu.click(inter.original, label="Stop", user=emu.member)
        await stop.final()
        await inter.final(timeout=60)
        assert "stopped" in inter.original.content
        assert inter.original.buttons == []


async def test_models_lists_each_task(emu: DiscordEmulator, hfcord: HFCordBot) -> None:
    inter = await emu.slash("models")
    await inter.final()
    for task in ("generation", "sentiment", "ner", "qa"):
        assert task in inter.text
