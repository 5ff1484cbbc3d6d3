"""What callers ask the registry for: one frozen request type per task (no torch import here).

Each encoder request names its result type (``ClassifyRequest`` is an
``EncoderRequest[ClassificationResult]``), so ``ModelRegistry.submit`` is typed end to end, and
checks itself with :meth:`EncoderRequest.validate` before any model is loaded. A generation
request carries chat messages: a plain prompt is one user message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Generic, Literal, TypeVar

from models.errors import InvalidInput
from models.results import ClassificationResult, EmbeddingResult, NERResult, QAResult

R = TypeVar("R", covariant=True)

EMPTY_TEXT = "The text is empty; give some text to analyse."
EMPTY_PROMPT = "The prompt is empty; write something to continue."


def _blank(text: str) -> bool:
    return not text or not text.strip()


class EncoderRequest(Generic[R]):
    """Base of the batched requests; ``R`` is the result the request is answered with."""

    def validate(self) -> None:
        """Raise :class:`InvalidInput` with a sentence when the request cannot be answered."""


@dataclass(frozen=True)
class ClassifyRequest(EncoderRequest[ClassificationResult]):
    """Text classification: the best label and the ``top_k`` best."""

    text: str
    top_k: int = 1

    def validate(self) -> None:
        if _blank(self.text):
            raise InvalidInput(EMPTY_TEXT)


@dataclass(frozen=True)
class NERRequest(EncoderRequest[NERResult]):
    """Named entities in ``text`` (any length: it is windowed)."""

    text: str

    def validate(self) -> None:
        if _blank(self.text):
            raise InvalidInput(EMPTY_TEXT)


@dataclass(frozen=True)
class QARequest(EncoderRequest[QAResult]):
    """Extractive question answering over ``context`` (any length: it is windowed)."""

    question: str
    context: str
    top_k: int = 1
    handle_impossible_answer: bool = False
    max_answer_len: int | None = None

    def validate(self) -> None:
        if _blank(self.question):
            raise InvalidInput("The question is empty; ask something.")
        if _blank(self.context):
            raise InvalidInput("The context is empty; there is nothing to search for an answer.")


@dataclass(frozen=True)
class EmbedRequest(EncoderRequest[EmbeddingResult]):
    """Sentence embeddings of ``texts`` (one question, or a batch of passages to index), each
    truncated to the model's input length; one unit-length vector per text, in order."""

    texts: tuple[str, ...]

    def validate(self) -> None:
        if not self.texts or any(_blank(text) for text in self.texts):
            raise InvalidInput(EMPTY_TEXT)


def _finite(value: float, default: float) -> float:
    return value if isinstance(value, (int, float)) and math.isfinite(value) else default


@dataclass(frozen=True)
class GenerationParams:
    """Sampling parameters for one generation; :meth:`clamped` bounds them before use.

    ``temperature`` 0 (or ``top_p`` 0) means greedy decoding. ``use_chat_template`` None means
    "when the tokenizer has one" (a local model's choice; a served model applies its own).
    """

    max_new_tokens: int | None = None
    temperature: float = 0.8
    top_p: float = 0.95
    repetition_penalty: float = 1.1
    use_chat_template: bool | None = None
    seed: int | None = None

    @property
    def do_sample(self) -> bool:
        return self.temperature > 0 and self.top_p > 0

    def clamped(self, max_new_tokens_cap: int) -> GenerationParams:
        """Parameters inside safe bounds: 1..cap tokens, temperature 0..2, top-p 0..1,
        repetition penalty 1..2 (non-finite values fall back to the defaults)."""
        wanted = self.max_new_tokens if self.max_new_tokens is not None else max_new_tokens_cap
        return replace(
            self,
            max_new_tokens=max(1, min(int(wanted), max_new_tokens_cap)),
            temperature=min(max(_finite(self.temperature, 0.8), 0.0), 2.0),
            top_p=min(max(_finite(self.top_p, 0.95), 0.0), 1.0),
            repetition_penalty=min(max(_finite(self.repetition_penalty, 1.1), 1.0), 2.0),
        )


Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    """One turn of a conversation, as chat templates and chat-completion APIs take it."""

    role: Role
    content: str

    def __post_init__(self) -> None:
        if self.role not in ("system", "user", "assistant"):
            raise ValueError(f"role must be system, user or assistant, got {self.role!r}")


@dataclass(frozen=True)
class GenerationRequest:
    """A conversation to continue; :meth:`from_prompt` makes the one-user-message case."""

    messages: tuple[ChatMessage, ...]
    params: GenerationParams = GenerationParams()

    @classmethod
    def from_prompt(
        cls, prompt: str, params: GenerationParams | None = None, *, system: str | None = None
    ) -> GenerationRequest:
        """``prompt`` as one user message, after an optional ``system`` message."""
        messages = [ChatMessage("system", system)] if system else []
        messages.append(ChatMessage("user", prompt))
        return cls(tuple(messages), params or GenerationParams())

    @property
    def is_plain_prompt(self) -> bool:
        """One user message, after system messages only: what a model without a chat
        template can take (as its last message's text)."""
        if not self.messages:
            return False
        *before, last = self.messages
        return last.role == "user" and all(m.role == "system" for m in before)

    def validate(self) -> None:
        if not self.messages or _blank(self.messages[-1].content):
            raise InvalidInput(EMPTY_PROMPT)
