"""The bot on a real inference engine started by the tests: ``transformers serve`` with
SmolLM2-135M-Instruct (one server for the session, see ``served_engine``).

Streaming through the emulator, Stop mid-stream, a wrong model name, two sharded bots each
answering only their servers, the engine killed mid-stream, and the engine down when the bot
starts (then back). Kept short: a few tokens per generation, on two shared CPU cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import discord
import pytest

from bot.client import HFCordBot
from bot.settings import Settings
from bot.sim import DiscordEmulator, SimInteraction
from tests.support.e2e import BotRunner
from tests.support.engines import ServedEngine

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def on_engine(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    """Settings for a bot generating on ``engine`` (a long read timeout: the cores are shared)."""

    def make(engine: ServedEngine, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "generation_backend": "openai",
            "generation_base_url": engine.base_url,
            "generation_model": engine.model,
            "generation_read_timeout_s": 120.0,
            **overrides,
        }
        return make_settings(**values)

    return make


def reply(inter: SimInteraction) -> str:
    assert inter.original is not None
    return inter.original.content


def has_text(inter: SimInteraction) -> bool:
    """The reply shows generated text (more than the prompt line and the placeholder)."""
    if inter.original is None:
        return False
    lines = inter.original.content.splitlines()
    return len(lines) > 1 and lines[1].strip() not in ("", "…") and "Loading" not in lines[1]


async def test_generate_streams_from_the_engine_which_applies_the_chat_template(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    on_engine: Callable[..., Settings],
    engine: ServedEngine,
) -> None:
    async with run_bot(on_engine(engine)):
        inter = await emu.slash(
            "generate",
            {"prompt": "What is the capital of France?", "max_tokens": 12, "temperature": 0.0},
        )
        await inter.final(timeout=180)
        text = reply(inter)
        assert inter.original is not None and inter.original.buttons == []
        # An instruct model answers the question when its chat template frames it.
        assert "Paris" in text, text
        footer = text.splitlines()[-1]
        assert footer.startswith("-# ") and " tokens · " in footer
        assert "smollm2-135m-instruct-hf" in footer  # the model's folder name, not its path
        assert engine.model not in text


async def test_stop_mid_stream_ends_the_reply(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    on_engine: Callable[..., Settings],
    engine: ServedEngine,
) -> None:
    async with run_bot(on_engine(engine)):
        inter = await emu.slash(
            "generate", {"prompt": "Write a long story about the sea.", "max_tokens": 200}
        )
        await inter.wait_until(has_text, timeout=180)
        assert inter.original is not None
        stop = await emu.click(inter.original, label="Stop")
        await stop.final()
        await inter.final(timeout=60)
        footer = reply(inter).splitlines()[-1]
        assert "stopped" in footer and inter.original.buttons == []
        assert int(footer.removeprefix("-# ").split(" tokens")[0]) < 200
        # The engine is free for the next request at once.
        again = await emu.slash("generate", {"prompt": "Say hi.", "max_tokens": 4})
        await again.final(timeout=180)
        assert "tokens" in reply(again) and "failed" not in reply(again)


async def test_a_model_the_engine_does_not_serve_is_named(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    on_engine: Callable[..., Settings],
    engine: ServedEngine,
) -> None:
    async with run_bot(on_engine(engine, generation_model="no-such-model")):
        inter = await emu.slash("generate", {"prompt": "Hello", "max_tokens": 4})
        await inter.final(timeout=60)
        host = f"127.0.0.1:{engine.port}"
        assert inter.messages[-1].ephemeral
        assert inter.messages[-1].content == (
            f"The generation service at {host} does not serve the model no-such-model; "
            "tell the bot's operator."
        )


async def test_two_sharded_bots_each_answer_only_their_servers(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    on_engine: Callable[..., Settings],
    engine: ServedEngine,
) -> None:
    zero, zero_general = emu.add_guild("Shard Zero", shard=(0, 2))
    one, one_general = emu.add_guild("Shard One", shard=(1, 2))
    async with contextlib.AsyncExitStack() as stack:
        bots: list[HFCordBot] = []
        for shard in (0, 1):
            settings = on_engine(engine, shard_count=2, shard_ids=(shard,))
            bots.append(await stack.enter_async_context(run_bot(settings)))
        seen: list[list[int | None]] = [[], []]
        for bot, record in zip(bots, seen, strict=True):

            async def on_interaction(
                interaction: discord.Interaction, record: list[int | None] = record
            ) -> None:
                record.append(interaction.guild_id)

            bot.add_listener(on_interaction)
        asks = [
            await emu.slash("generate", {"prompt": "Say hi.", "max_tokens": 4}, channel=channel)
            for channel in (zero_general, one_general)
        ]
        for inter in asks:
            await inter.final(timeout=180)
            assert " tokens · " in reply(inter) and "failed" not in reply(inter)
        assert seen == [[zero.id], [one.id]]


async def test_the_engine_killed_mid_stream_is_one_sentence(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    on_engine: Callable[..., Settings],
    engine: ServedEngine,
) -> None:
    async with run_bot(on_engine(engine)):
        inter = await emu.slash(
            "generate", {"prompt": "Write a long story about a fox.", "max_tokens": 200}
        )
        await inter.wait_until(has_text, timeout=180)
        engine.kill()
        killed = time.monotonic()
        await inter.final(timeout=30)
        assert time.monotonic() - killed < 10
        host = f"127.0.0.1:{engine.port}"
        assert inter.messages[-1].ephemeral
        assert inter.messages[-1].content.startswith(
            f"The generation service at {host} stopped answering in the middle of the reply; "
            "try again in"
        )
        assert reply(inter).splitlines()[-1] == "-# generation failed"

        sentiment = await emu.slash("sentiment", {"text": "the rest still works"})
        await sentiment.final()
        assert "confident" in sentiment.text


async def test_the_engine_down_at_start_then_back(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    on_engine: Callable[..., Settings],
    served_engine: ServedEngine,
) -> None:
    served_engine.kill()
    host = f"127.0.0.1:{served_engine.port}"
    async with run_bot(on_engine(served_engine)):
        started = time.monotonic()
        inter = await emu.slash("generate", {"prompt": "Hello?", "max_tokens": 4})
        await inter.final(timeout=30)
        assert time.monotonic() - started < 10
        assert inter.messages[-1].content.startswith(
            f"The generation service at {host} is not answering; try again in"
        )
        models = await emu.slash("models")
        await models.final()
        assert f"openai at `{host}`" in models.text and "🟢 answering" not in models.text

        await asyncio.to_thread(served_engine.start)
        models = await emu.slash("models")  # asks the engine: answering again
        await models.final(timeout=30)
        assert f"openai at `{host}` · 🟢 answering" in models.text
        again = await emu.slash("generate", {"prompt": "Say hi.", "max_tokens": 4})
        await again.final(timeout=180)
        assert " tokens · " in reply(again) and "failed" not in reply(again)
