"""Plain frozen results the registry returns (no torch, no numpy: safe to import from cogs)."""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from models.names import public_name

if TYPE_CHECKING:
    from models.engines import EngineHealth
    from models.tasks import Task

FinishReason = Literal["length", "stop", "cancelled"]
ModelState = Literal["not loaded", "loading", "ready", "failed"]


@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float


@dataclass(frozen=True)
class ClassificationResult:
    """The best label and score, and the ``top_k`` labels best first."""

    label: str
    score: float
    scores: tuple[LabelScore, ...]
    model_id: str


@dataclass(frozen=True)
class Entity:
    """One aggregated entity; ``start``/``end`` are character offsets into the input text."""

    word: str
    entity_group: str
    score: float
    start: int
    end: int


@dataclass(frozen=True)
class NERResult:
    entities: tuple[Entity, ...]
    model_id: str


@dataclass(frozen=True)
class Answer:
    """An answer span: ``text == context[start:end]``; the empty answer (0, 0) means "no answer"."""

    text: str
    score: float
    start: int
    end: int

    @property
    def is_empty(self) -> bool:
        return self.start == self.end


@dataclass(frozen=True)
class QAResult:
    """Answers best first (at most ``top_k``); empty when the context holds no candidate.

    ``read_chars`` is set when the context was longer than the reader windows one request may
    cover (``ModelSpec.max_windows``): only ``context[:read_chars]`` was searched.
    """

    answers: tuple[Answer, ...]
    model_id: str
    read_chars: int | None = None

    @property
    def best(self) -> Answer | None:
        return self.answers[0] if self.answers else None


@dataclass(frozen=True)
class EmbeddingResult:
    """One unit-length embedding per input text, in order, each as little-endian float32
    bytes (``dimension`` values): compact, and what a vector index stores as is."""

    vectors: tuple[bytes, ...]
    dimension: int
    model_id: str

    def values(self, index: int) -> list[float]:
        """The ``index``-th vector as floats."""
        values = array("f", self.vectors[index])
        if sys.byteorder == "big":
            values.byteswap()
        return values.tolist()


@dataclass(frozen=True)
class GenerationStats:
    """How a generation ended: the whole text, token counts, time and why it stopped;
    ``model_name`` is the model as users see it (``ModelSpec.name``, never a path)."""

    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float
    finish_reason: FinishReason
    model_id: str
    model_name: str = ""

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class ModelStatus:
    """One task's model as /models shows it; ``guild_id`` is set for a server's override.

    ``name`` is what users see (``ModelSpec.name``; when not given, the folder's name or hub
    id), ``model_id`` the reference itself, which for a local model is a host path: for logs
    and the operator only. A model on a remote engine has ``source`` "engine", its ``backend``
    (e.g. "openai") and the engine's ``health`` (with its host, never its key).
    """

    task: Task
    model_id: str
    source: Literal["hub", "local", "engine"]
    state: ModelState
    reason: str | None
    guild_id: int | None
    device: str
    revision: str | None = None
    gguf_file: str | None = None
    description: str | None = None
    load_seconds: float | None = None
    name: str = ""
    backend: str = "local"
    health: EngineHealth | None = None

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", public_name(self.model_id))
