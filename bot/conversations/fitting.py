"""Fitting a conversation into the model: the request it is sent as, trimmed from the oldest turn.

The prompt is counted with the serving model's own tokenizer and chat template
(``models.prompts``) against its context window less the reply's budget; the oldest turns go
first (a conversation then starts with a person's turn, as chat templates expect), and the
newest turn always stays. A model without a chat template continues a plain transcript
(``Name: text`` lines ending with the bot's name), and :func:`speaker_cut` ends its reply where
it starts writing someone else's line. A template that refuses a system message gets the persona
at the start of the first turn instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from bot.conversations.turns import Turn, merged
from bot.errors import UserFacingError
from models.prompts import PromptCounter, PromptWindow
from models.requests import ChatMessage, GenerationParams, GenerationRequest


class TooLongForModel(UserFacingError):
    """Even the newest turn alone does not fit the model's window."""


@dataclass(frozen=True)
class Fitted:
    """The request to send, how many of the oldest turns it ``dropped`` to fit, its
    ``prompt_tokens`` (exact when the window says so) and whether it is a plain
    ``transcript`` (a model without a chat template)."""

    request: GenerationRequest
    dropped: int
    prompt_tokens: int
    transcript: bool


def build_request(
    persona: str,
    turns: Sequence[Turn],
    window: PromptWindow,
    params: GenerationParams,
    *,
    bot_name: str,
) -> GenerationRequest:
    """``turns`` (ending with a person's) as the model takes them."""
    turns = merged(turns)
    if not window.chat_template:
        lines = [t.text if t.role == "user" else f"{bot_name}: {t.text}" for t in turns]
        transcript = f"{persona}\n\n" + "\n".join(lines) + f"\n{bot_name}:"
        return GenerationRequest(
            (ChatMessage("user", transcript),), replace(params, use_chat_template=False)
        )
    messages = [ChatMessage(t.role, t.text) for t in turns]
    if window.system_role:
        messages.insert(0, ChatMessage("system", persona))
    else:
        messages[0] = ChatMessage(messages[0].role, f"{persona}\n\n{messages[0].content}")
    return GenerationRequest(tuple(messages), params)


def _from(turns: Sequence[Turn], start: int) -> list[Turn]:
    """``turns[start:]``, without assistant turns before the first person's turn."""
    rest = list(turns[start:])
    while len(rest) > 1 and rest[0].role == "assistant":
        rest.pop(0)
    return rest


async def fit(
    persona: str,
    turns: Sequence[Turn],
    counter: PromptCounter,
    params: GenerationParams,
    *,
    bot_name: str,
) -> Fitted:
    """The request for the newest turns (one per message) that fit ``counter``'s model,
    leaving room for ``params.max_new_tokens`` of reply. Raises :class:`TooLongForModel` when
    even the newest turn does not fit."""
    if not turns or turns[-1].role != "user":
        raise ValueError("a conversation to answer ends with a person's turn")
    window = counter.window
    assert params.max_new_tokens is not None
    budget = window.prompt_budget(params.max_new_tokens)

    def request_from(start: int) -> GenerationRequest:
        return build_request(persona, _from(turns, start), window, params, bot_name=bot_name)

    tokens = await counter.count(request_from(0))
    if budget is None or tokens <= budget:
        return Fitted(request_from(0), 0, tokens, not window.chat_template)
    # Fewer turns never take more tokens: find the fewest dropped that fit.
    newest = len(turns) - 1
    last_tokens = await counter.count(request_from(newest))
    if last_tokens > budget:
        raise TooLongForModel(
            f"That message is too long for this model: with the persona it takes "
            f"{last_tokens:,} tokens, and the model has room for {budget:,} before its answer. "
            "Shorten it and try again."
        )
    low, high, best = 1, newest, (newest, last_tokens)
    while low <= high:
        middle = (low + high) // 2
        counted = await counter.count(request_from(middle))
        if counted <= budget:
            best = (middle, counted)
            high = middle - 1
        else:
            low = middle + 1
    start, tokens = best
    dropped = len(turns) - len(_from(turns, start))
    return Fitted(request_from(start), dropped, tokens, not window.chat_template)


def speaker_cut(speakers: Sequence[str], bot_name: str) -> Callable[[str], str | None]:
    """For a plain transcript: the text up to where the model starts writing a new line for
    anyone in the conversation (or itself again); None while it has not."""
    names = sorted({*speakers, bot_name}, key=len, reverse=True)
    pattern = re.compile(r"\n\s*(?:" + "|".join(re.escape(n) for n in names) + r"):")

    def cut(text: str) -> str | None:
        match = pattern.search(text)
        return text[: match.start()].rstrip() if match else None

    return cut
