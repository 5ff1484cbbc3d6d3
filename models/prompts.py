"""How many tokens a conversation's prompt takes for the model that will answer it, and how many
that model can hold (no torch import here).

Fitting a conversation into a model means counting its prompt as the model will see it (its own
tokenizer and chat template) against its context window less the reply's budget. The registry's
:meth:`~models.registry.ModelRegistry.prompt_counter` gives a :class:`PromptCounter` for the
generation model serving a server, chosen by :func:`counter_for`:

- a streamer that can count for itself (a served engine with a tokenize endpoint) implements
  :class:`CountsPrompts`;
- a model loaded in this process is counted exactly, by :class:`TokenizerCounter` on its device
  thread, with the same function that builds the prompt it generates from;
- anything else gets :class:`EstimatedCounter`'s conservative estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from models.requests import ChatMessage, GenerationRequest

if TYPE_CHECKING:
    from models.runners.base import DeviceRun

# The estimate errs towards more tokens than a real tokenizer finds (English runs about four
# characters a token), so an estimated prompt fits the real window.
ESTIMATE_CHARS_PER_TOKEN = 3.0
# Role markers and separators a chat template puts around each message.
ESTIMATE_TOKENS_PER_MESSAGE = 8
# Assumed when a model's window is unknown: small enough for any current chat model.
ESTIMATE_CONTEXT_WINDOW = 2048


@dataclass(frozen=True)
class PromptWindow:
    """What a generation model can take: ``context_window`` tokens in all (None: no known
    limit), whether it has a chat template (else it continues one plain prompt) and whether the
    template takes a system message; ``exact`` when counts come from its own tokenizer."""

    context_window: int | None
    chat_template: bool
    system_role: bool
    exact: bool

    def reply_tokens(self, max_new_tokens: int) -> int:
        """Tokens kept for the reply: ``max_new_tokens``, at most half the window (the rule
        the local generation session applies before it cuts a prompt from the start)."""
        if self.context_window is None:
            return max_new_tokens
        return max(1, min(max_new_tokens, self.context_window // 2))

    def prompt_budget(self, max_new_tokens: int) -> int | None:
        """The most prompt tokens that leave room for the reply (None: no known limit)."""
        if self.context_window is None:
            return None
        return self.context_window - self.reply_tokens(max_new_tokens)


class PromptCounter(Protocol):
    """Counts prompts for one generation model."""

    @property
    def window(self) -> PromptWindow: ...

    async def count(self, request: GenerationRequest) -> int:
        """Tokens of ``request``'s prompt as the model will see it."""
        ...


@runtime_checkable
class CountsPrompts(Protocol):
    """A :class:`~models.runners.base.StreamRunner` that counts its own prompts."""

    async def prompt_counter(self) -> PromptCounter: ...


class TokenizerCounter:
    """Exact counts for a model loaded in this process, on its device thread (the only thread
    that may use its tokenizer)."""

    def __init__(self, tokenizer: Any, window: PromptWindow, run: DeviceRun) -> None:
        self._tokenizer = tokenizer
        self._window = window
        self._run = run

    @classmethod
    async def open(cls, model: Any, tokenizer: Any, run: DeviceRun) -> TokenizerCounter:
        window = await run(lambda: describe_model(model, tokenizer))
        return cls(tokenizer, window, run)

    @property
    def window(self) -> PromptWindow:
        return self._window

    async def count(self, request: GenerationRequest) -> int:
        tokenizer = self._tokenizer

        def count() -> int:
            from models.generation import build_prompt_ids  # imports torch: device thread only

            return len(build_prompt_ids(tokenizer, request))

        return await self._run(count)


class EstimatedCounter:
    """A conservative estimate from characters, for a model that cannot count (a served model
    applies its own chat template, so one is assumed)."""

    def __init__(self, context_window: int | None = ESTIMATE_CONTEXT_WINDOW) -> None:
        self._window = PromptWindow(
            context_window=context_window, chat_template=True, system_role=True, exact=False
        )

    @property
    def window(self) -> PromptWindow:
        return self._window

    async def count(self, request: GenerationRequest) -> int:
        return estimate_tokens(request.messages)


def estimate_tokens(messages: tuple[ChatMessage, ...] | list[ChatMessage]) -> int:
    """More tokens than a real tokenizer and template would likely make of ``messages``."""
    return sum(
        math.ceil(len(m.content) / ESTIMATE_CHARS_PER_TOKEN) + ESTIMATE_TOKENS_PER_MESSAGE
        for m in messages
    )


def describe_model(model: Any, tokenizer: Any) -> PromptWindow:
    """The window of a loaded causal LM and what its chat template takes (device thread)."""
    template = bool(getattr(tokenizer, "chat_template", None))
    return PromptWindow(
        context_window=context_window_of(model),
        chat_template=template,
        system_role=template and _renders(tokenizer, [{"role": "system", "content": "s"}]),
        exact=True,
    )


def context_window_of(model: Any) -> int | None:
    """Positions the model can attend to, from its config (as the generation session reads it)."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _renders(tokenizer: Any, first: list[dict[str, str]]) -> bool:
    # Some templates refuse a system message (they raise); the caller then folds it into the
    # first user message.
    messages = [*first, {"role": "user", "content": "u"}]
    try:
        tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except Exception:
        return False
    return True


async def counter_for(streamer: object, loaded: Any, run: DeviceRun) -> PromptCounter:
    """The best counter for a generation model: its own, exact on its tokenizer, or estimated."""
    if isinstance(streamer, CountsPrompts):
        return await streamer.prompt_counter()
    tokenizer = getattr(loaded, "tokenizer", None)
    model = getattr(loaded, "model", None)
    if tokenizer is not None and model is not None:
        return await TokenizerCounter.open(model, tokenizer, run)
    return EstimatedCounter()
