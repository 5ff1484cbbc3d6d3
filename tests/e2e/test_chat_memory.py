"""A real instruct model remembers within a conversation (slow: SmolLM2-135M-Instruct, local)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.conversations.turns import bot_words
from bot.settings import Settings
from bot.sim import DiscordEmulator
from tests.support.chat import next_answer, thread_of
from tests.support.e2e import BotRunner
from tests.support.models import smollm2_gguf

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2() -> Path:
    return smollm2_gguf()


async def test_a_secret_word_told_in_one_turn_is_said_back_in_the_next(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    make_settings: Callable[..., Settings],
    smollm2: Path,
) -> None:
    settings = make_settings(
        generation_model=str(smollm2.parent),
        generation_gguf_file=smollm2.name,
        max_new_tokens=40,
        chat_temperature=0.0,  # greedy: the same answer every run
    )
    async with run_bot(settings):
        opened = await emu.slash("chat", {"message": "Remember this secret word: pineapple."})
        await opened.final(timeout=600)  # the first request loads the model
        thread = thread_of(opened.original)
        told = await next_answer(emu, thread)
        ask = await emu.post_message(
            thread, emu.member, f"{emu.bot_user.mention} What is the secret word I told you?"
        )
        answer = await next_answer(emu, thread, ask, timeout=300)
    assert "pineapple" in bot_words(answer.content).lower(), answer.content
    assert "smollm2" in answer.content.lower()  # the footer names the model that answered
    assert told.id < answer.id
