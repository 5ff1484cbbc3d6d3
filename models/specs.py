"""What to serve: task names, model specs and generation parameters (no torch import here)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum


class Task(StrEnum):
    """The tasks the registry serves; values are the names used in settings, CLI and Discord."""

    GENERATION = "generation"
    SENTIMENT = "sentiment"
    NER = "ner"
    QA = "qa"


ENCODER_TASKS: frozenset[Task] = frozenset({Task.SENTIMENT, Task.NER, Task.QA})

DEFAULT_MODELS: dict[Task, str] = {
    Task.GENERATION: "gpt2",
    Task.SENTIMENT: "distilbert-base-uncased-finetuned-sst-2-english",
    Task.NER: "dbmdz/bert-large-cased-finetuned-conll03-english",
    Task.QA: "distilbert-base-cased-distilled-squad",
}

_DTYPES = frozenset({"auto", "float32", "float16", "bfloat16"})


@dataclass(frozen=True)
class ModelSpec:
    """One servable model: where it comes from and how it is batched.

    For encoder tasks ``max_batch`` is the number of requests gathered into one executor job;
    the runner sorts them by length and runs forward passes of ``forward_batch`` rows (inputs
    of similar length together, so padding stays small). For generation ``max_batch`` is the
    number of streams that may generate at the same time (interleaved, never batched together).
    ``queue_depth`` bounds the requests waiting beyond that; past it requests fail fast with
    :class:`models.errors.QueueFull`. ``length_buckets`` are character-length edges: one job
    only holds requests from one bucket, so a very long input never joins short ones.
    """

    task: Task
    model_id: str
    revision: str | None = None
    gguf_file: str | None = None
    dtype: str = "auto"
    device: str = "cpu"
    max_batch: int = 16
    forward_batch: int = 16
    max_wait_ms: float = 5.0
    queue_depth: int = 256
    length_buckets: tuple[int, ...] = (512, 2048)
    # generation
    max_new_tokens: int = 200
    generation_chunk_tokens: int = 4
    # extractive QA, as transformers 4.x's question-answering pipeline
    max_seq_len: int = 384
    doc_stride: int = 128
    max_answer_len: int = 15
    # free text shown by /models, e.g. "fine-tuned by job 12"
    description: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "task", Task(self.task))
        if not self.model_id or not self.model_id.strip():
            raise ValueError("model_id must not be empty")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        for name in (
            "max_batch",
            "forward_batch",
            "queue_depth",
            "max_new_tokens",
            "generation_chunk_tokens",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_wait_ms < 0:
            raise ValueError("max_wait_ms must not be negative")
        if self.max_answer_len < 1:
            raise ValueError("max_answer_len must be at least 1")
        if not 0 <= self.doc_stride < self.max_seq_len:
            raise ValueError("doc_stride must be between 0 and max_seq_len")
        if list(self.length_buckets) != sorted(self.length_buckets):
            raise ValueError("length_buckets must be increasing")

    @property
    def key(self) -> tuple[str, str, str | None, str | None, str, str]:
        """What identifies a loaded model: specs with the same key share one loaded copy."""
        return (self.task, self.model_id, self.revision, self.gguf_file, self.dtype, self.device)

    def with_model(
        self,
        model_id: str,
        *,
        revision: str | None = None,
        gguf_file: str | None = None,
        description: str | None = None,
    ) -> ModelSpec:
        """This spec's task and limits, serving another model (used for per-guild overrides)."""
        return replace(
            self,
            model_id=model_id,
            revision=revision,
            gguf_file=gguf_file,
            description=description,
        )


_TASK_DEFAULTS: dict[Task, dict[str, object]] = {
    Task.GENERATION: {"max_batch": 2, "queue_depth": 16},
    Task.SENTIMENT: {"max_batch": 64, "max_wait_ms": 5.0, "queue_depth": 256},
    Task.NER: {"max_batch": 32, "max_wait_ms": 5.0, "queue_depth": 128},
    Task.QA: {"max_batch": 8, "forward_batch": 8, "max_wait_ms": 5.0, "queue_depth": 64},
}


def default_spec(task: Task | str, model_id: str, **overrides: object) -> ModelSpec:
    """A spec for ``task`` with that task's batching defaults, overridden by ``overrides``."""
    task = Task(task)
    values: dict[str, object] = {**_TASK_DEFAULTS[task], **overrides}
    return ModelSpec(task=task, model_id=model_id, **values)  # type: ignore[arg-type]


def default_specs(
    *,
    generation: str = DEFAULT_MODELS[Task.GENERATION],
    generation_gguf_file: str | None = None,
    sentiment: str = DEFAULT_MODELS[Task.SENTIMENT],
    ner: str = DEFAULT_MODELS[Task.NER],
    qa: str = DEFAULT_MODELS[Task.QA],
    device: str = "cpu",
    max_new_tokens: int = 200,
) -> dict[Task, ModelSpec]:
    """The four task specs from settings-like values (hub ids or local folders)."""
    return {
        Task.GENERATION: default_spec(
            Task.GENERATION,
            generation,
            gguf_file=generation_gguf_file,
            device=device,
            max_new_tokens=max_new_tokens,
        ),
        Task.SENTIMENT: default_spec(Task.SENTIMENT, sentiment, device=device),
        Task.NER: default_spec(Task.NER, ner, device=device),
        Task.QA: default_spec(Task.QA, qa, device=device),
    }


def _finite(value: float, default: float) -> float:
    return value if isinstance(value, (int, float)) and math.isfinite(value) else default


@dataclass(frozen=True)
class GenerationParams:
    """Sampling parameters for one generation; :meth:`clamped` bounds them before use.

    ``temperature`` 0 (or ``top_p`` 0) means greedy decoding. ``use_chat_template`` None means
    "when the tokenizer has one".
    """

    max_new_tokens: int | None = None
    temperature: float = 0.8
    top_p: float = 0.95
    repetition_penalty: float = 1.1
    system_prompt: str | None = None
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
