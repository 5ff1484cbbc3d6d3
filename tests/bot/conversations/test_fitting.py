"""Fitting turns into a model's window: trimming from the oldest, transcripts, system messages."""

from __future__ import annotations

import pytest

from bot.conversations.fitting import TooLongForModel, build_request, fit, speaker_cut
from bot.conversations.turns import Turn
from models.prompts import PromptWindow
from models.requests import GenerationParams, GenerationRequest

CHAT = PromptWindow(context_window=100, chat_template=True, system_role=True, exact=True)
PARAMS = GenerationParams(max_new_tokens=20, temperature=0)


class WordCounter:
    """One token per word, and two per message (the template's markers)."""

    def __init__(self, window: PromptWindow) -> None:
        self.window = window
        self.counted: list[GenerationRequest] = []

    async def count(self, request: GenerationRequest) -> int:
        self.counted.append(request)
        return sum(len(m.content.split()) + 2 for m in request.messages)


def conversation(n: int, words: int = 10) -> list[Turn]:
    turns = []
    for i in range(n):
        role = "user" if i % 2 == 0 else "assistant"
        turns.append(Turn(role, f"turn{i} " + "w " * (words - 1)))  # type: ignore[arg-type]
    return turns


async def test_a_short_conversation_is_sent_whole() -> None:
    counter = WordCounter(CHAT)
    turns = conversation(3)
    fitted = await fit("Be kind.", turns, counter, PARAMS, bot_name="hfcord")
    assert fitted.dropped == 0 and not fitted.transcript
    assert [m.role for m in fitted.request.messages] == ["system", "user", "assistant", "user"]
    assert fitted.request.messages[0].content == "Be kind."
    assert len(counter.counted) == 1


async def test_the_oldest_turns_go_first_and_a_person_speaks_first() -> None:
    counter = WordCounter(CHAT)  # the prompt may take 100 - 20 = 80 tokens
    turns = conversation(9)  # 12 tokens a turn, 4 for the persona: 112 in all
    fitted = await fit("Be kind.", turns, counter, PARAMS, bot_name="hfcord")
    assert fitted.prompt_tokens <= 80
    contents = [m.content.split()[0] for m in fitted.request.messages[1:]]
    assert contents == ["turn4", "turn5", "turn6", "turn7", "turn8"]
    assert fitted.request.messages[1].role == "user"
    assert fitted.dropped == 4  # turn3 (the bot's) went with the turns before it
    # Binary search: far fewer counts than turns.
    assert len(counter.counted) <= 6


async def test_a_newest_turn_too_long_for_the_window_is_refused() -> None:
    with pytest.raises(TooLongForModel, match="too long for this model"):
        await fit("Be kind.", [Turn("user", "w " * 200)], WordCounter(CHAT), PARAMS, bot_name="b")


def test_a_model_without_a_template_continues_a_transcript() -> None:
    window = PromptWindow(context_window=1024, chat_template=False, system_role=False, exact=True)
    turns = [Turn("user", "Ada: hi"), Turn("assistant", "hello"), Turn("user", "Ada: bye")]
    request = build_request("Be kind.", turns, window, PARAMS, bot_name="hfcord")
    assert request.params.use_chat_template is False and request.is_plain_prompt
    assert request.messages[0].content == "Be kind.\n\nAda: hi\nhfcord: hello\nAda: bye\nhfcord:"
    cut = speaker_cut(["Ada"], "hfcord")
    assert cut(" fine thanks") is None
    assert cut(" fine thanks\nAda: and you?") == " fine thanks"
    assert cut(" sure\n hfcord: again") == " sure"


def test_a_template_without_a_system_role_gets_the_persona_in_the_first_turn() -> None:
    window = PromptWindow(context_window=1024, chat_template=True, system_role=False, exact=True)
    turns = [Turn("user", "Ada: hi"), Turn("user", "Bob: hello")]
    request = build_request("Be kind.", turns, window, PARAMS, bot_name="hfcord")
    assert [(m.role, m.content) for m in request.messages] == [
        ("user", "Be kind.\n\nAda: hi\nBob: hello")
    ]
