"""What users see when a model is loading, missing or busy, and when input is out of bounds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.client import HFCordBot
from bot.settings import Settings
from bot.sim import DiscordEmulator
from models.errors import QueueFull
from tests.support.e2e import BotRunner


async def test_first_request_shows_a_loading_note_that_the_answer_replaces(
    emu: DiscordEmulator, hfcord: HFCordBot
) -> None:
    first = await emu.slash("sentiment", {"text": "I love this"})
    await first.final()
    assert first.original is not None
    history = first.original.contents
    assert any("Loading the sentiment model" in text for text in history), history
    assert "confident" in history[-1]
    assert [m for m in first.messages if not m.deleted] == [first.original]

    second = await emu.slash("sentiment", {"text": "I love this too"})
    await second.final()
    assert second.original is not None
    assert not any("Loading" in text for text in second.original.contents)


async def test_a_model_that_is_not_available_is_named_with_how_to_fix_it(
    emu: DiscordEmulator, run_bot: BotRunner, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(ner_model="nobody-has/this-model")
    async with run_bot(settings):
        inter = await emu.slash("ner", {"text": "Ada Lovelace"})
        await inter.final()
        (shown,) = [m for m in inter.messages if not m.deleted]
        assert shown.ephemeral
        assert "nobody-has/this-model" in shown.content
        assert "Traceback" not in shown.content
        # the other tasks keep working
        ok = await emu.slash("sentiment", {"text": "still fine"})
        await ok.final()
        assert "confident" in ok.text


async def test_a_full_queue_says_busy_with_an_eta(
    emu: DiscordEmulator, hfcord: HFCordBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def busy(*args: Any, **kwargs: Any) -> None:
        raise QueueFull("tiny-sentiment", position=5, eta_s=3.2)

    assert hfcord.registry is not None
    monkeypatch.setattr(hfcord.registry, "classify", busy)
    inter = await emu.slash("sentiment", {"text": "hello"})
    await inter.final()
    (shown,) = [m for m in inter.messages if not m.deleted]
    assert shown.ephemeral
    assert (
        "busy" in shown.content and "4 requests ahead" in shown.content and "3 s" in shown.content
    )


async def test_inputs_out_of_bounds_are_refused_privately(
    emu: DiscordEmulator, run_bot: BotRunner, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(max_input_chars=50, upload_max_bytes=100, context_max_chars=80)
    async with run_bot(settings):
        cases = [
            ("sentiment", {"text": "x" * 51}, "limit is 50"),
            ("ner", {"text": "   "}, "empty"),
            ("generate", {"prompt": "y" * 60}, "limit is 50"),
            ("context set", {"text": "z" * 81}, "limit is 80"),
            (
                "context upload",
                {"file": emu.attachment("big.txt", "a" * 101)},
                "the limit is 100 bytes",
            ),
            (
                "context upload",
                {"file": emu.attachment("image.png", b"\x89PNG....")},
                "Upload a .htm or .html or .markdown or .md or .pdf or .txt file",
            ),
        ]
        for name, options, expected in cases:
            inter = await emu.slash(name, options)
            await inter.final()
            shown = [m for m in inter.messages if not m.deleted]
            assert len(shown) == 1 and shown[0].ephemeral, (name, inter.describe())
            assert expected in shown[0].content, (name, shown[0].content)
        # nothing was stored by the refused context commands
        show = await emu.slash("context show")
        await show.final()
        assert "/context set" in show.text
