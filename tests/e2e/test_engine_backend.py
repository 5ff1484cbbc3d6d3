"""The bot with HFCORD_GENERATION_BACKEND=openai, on a fake OpenAI-compatible server: /generate
streams from the engine, Stop closes the engine's stream, a dead engine is one sentence in
seconds while the other commands keep working, /models shows backend, host and health."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bot.conversations.turns import bot_words
from bot.settings import Settings
from bot.sim import DiscordEmulator, SimInteraction
from tests.support.chat import next_answer, thread_of
from tests.support.e2e import BotRunner
from tests.support.engines import free_port
from tests.support.fake_engine import FakeEngine, Status, Stream
from tests.support.waiting import wait_until

API_KEY = "sk-e2e-secret-key-987654321"


@pytest.fixture
async def fake() -> AsyncIterator[FakeEngine]:
    async with FakeEngine() as engine:
        yield engine


@pytest.fixture
def engine_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(base_url: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "generation_backend": "openai",
            "generation_base_url": base_url,
            "generation_model": "fake-model",
            "generation_api_key": API_KEY,
            **overrides,
        }
        return make_settings(**values)

    return make


def everything_the_bot_wrote(emu: DiscordEmulator) -> str:
    return "\n".join(r.content for m in emu.bot_messages for r in m.revisions)


def reply_text(inter: SimInteraction) -> str:
    assert inter.original is not None
    return inter.original.content


async def test_generate_streams_from_the_engine(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    engine_settings: Callable[..., Settings],
    fake: FakeEngine,
) -> None:
    fake.plan(Stream(["Once", " there", " was", " a", " fox", "."], delay=0.3))
    async with run_bot(engine_settings(fake.base_url)):
        inter = await emu.slash("generate", {"prompt": "Tell a story", "max_tokens": 12})
        await inter.final(timeout=30)
        original = inter.original
        assert original is not None and original.buttons == []
        assert "Once there was a fox." in original.content
        assert "6 tokens" in original.content and "finished" in original.content
        assert "fake-model" in original.content
        # streamed: a partial text was shown before the final one
        partial = [r.content for r in original.revisions if "Once" in r.content]
        assert any("fox." not in text for text in partial)
        body = fake.requests[0]
        assert body["messages"] == [{"role": "user", "content": "Tell a story"}]
        assert body["max_tokens"] == 12 and body["model"] == "fake-model"
    assert API_KEY not in everything_the_bot_wrote(emu)


async def test_stop_closes_the_engines_stream(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    engine_settings: Callable[..., Settings],
    fake: FakeEngine,
) -> None:
    fake.plan(Stream([f" word{i}" for i in range(200)], delay=0.05))
    async with run_bot(engine_settings(fake.base_url)):
        inter = await emu.slash("generate", {"prompt": "Go on and on"}, user=emu.member)
        await inter.wait_until(
            lambda i: i.original is not None and "word1" in i.original.content, timeout=30
        )
        assert inter.original is not None
        stop = await emu.click(inter.original, label="Stop", user=emu.member)
        await stop.final()
        await inter.final(timeout=30)
        assert "stopped" in reply_text(inter) and inter.original.buttons == []
        await wait_until(lambda: fake.disconnects == 1, what="the engine to see the stream close")
        assert fake.completed == 0 and fake.pieces_sent < 200


async def test_a_dead_engine_is_a_sentence_in_seconds_and_the_rest_keeps_working(
    emu: DiscordEmulator, run_bot: BotRunner, engine_settings: Callable[..., Settings]
) -> None:
    port = free_port()  # the engine is down when the bot starts
    host = f"127.0.0.1:{port}"
    async with run_bot(engine_settings(f"http://{host}/v1")):
        started = time.monotonic()
        inter = await emu.slash("generate", {"prompt": "Hello?"})
        await inter.final(timeout=30)
        assert time.monotonic() - started < 10
        assert inter.deferred  # acknowledged within Discord's 3 s, before the engine failed
        error = inter.messages[-1]
        assert error.ephemeral
        assert error.content.startswith(
            f"The generation service at {host} is not answering; try again in"
        )
        assert "generation failed" in reply_text(inter)

        sentiment = await emu.slash("sentiment", {"text": "still here"})
        await sentiment.final()
        assert "confident" in sentiment.text

        models = await emu.slash("models")
        await models.final()
        assert f"**generation**: `fake-model` · openai at `{host}` ·" in models.text
        assert "🟠 paused after repeated failures" in models.text or "🔴 failing" in models.text
        assert "**sentiment**" in models.text and "local" in models.text
    assert API_KEY not in everything_the_bot_wrote(emu)


async def test_models_asks_the_engine_and_shows_its_health(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    engine_settings: Callable[..., Settings],
    fake: FakeEngine,
) -> None:
    async with run_bot(engine_settings(fake.base_url)):
        inter = await emu.slash("models")
        await inter.final()
        assert f"openai at `127.0.0.1:{fake.port}` · 🟢 answering" in inter.text
        assert inter.ephemeral


async def test_a_model_the_engine_does_not_serve_is_named(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    engine_settings: Callable[..., Settings],
    fake: FakeEngine,
) -> None:
    fake.plan(Status(404, "The model `llama-9000` does not exist."))
    async with run_bot(engine_settings(fake.base_url, generation_model="llama-9000")):
        inter = await emu.slash("generate", {"prompt": "Hi"})
        await inter.final(timeout=30)
        assert inter.messages[-1].ephemeral
        assert inter.messages[-1].content == (
            f"The generation service at 127.0.0.1:{fake.port} does not serve the model "
            "llama-9000; tell the bot's operator."
        )
        models = await emu.slash("models")
        await models.final()
        assert "🔴 failing" in models.text and "does not serve the model llama-9000" in models.text


async def test_a_chat_on_the_engine_sends_the_whole_conversation_with_its_roles(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    engine_settings: Callable[..., Settings],
    fake: FakeEngine,
) -> None:
    """Conversations take the same path: the engine gets the system prompt and the earlier
    turns with their roles (it applies the chat template), and the thread shows its words."""
    fake.plan(Stream(["Hello", " Ada", "."]), Stream(["Your", " name", " is", " Ada", "."]))
    async with run_bot(engine_settings(fake.base_url, chat_temperature=0.0)):
        opened = await emu.slash("chat", {"message": "My name is Ada."})
        await opened.final(timeout=30)
        thread = thread_of(opened.original)
        first = await next_answer(emu, thread)
        assert bot_words(first.content) == "Hello Ada."
        asked = await emu.post_message(thread, emu.member, f"{emu.bot_user.mention} My name?")
        second = await next_answer(emu, thread, asked)
        assert bot_words(second.content) == "Your name is Ada."
    messages = fake.requests[-1]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1]["content"].endswith("My name is Ada.")
    assert messages[2]["content"] == "Hello Ada."
    assert messages[3]["content"].endswith("My name?")
    assert fake.requests[-1]["temperature"] == 0
