"""What to serve: model specs, with each task's defaults from the task table (no torch here).

``Task`` (models.tasks) and ``GenerationParams`` (models.requests) are importable from here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

from models.engines import Engine
from models.names import public_name
from models.requests import GenerationParams
from models.tasks import Task, task_info

__all__ = [
    "DEFAULT_QA_MAX_WINDOWS",
    "ENCODER_RUNTIMES",
    "Engine",
    "GenerationParams",
    "ModelSpec",
    "Task",
    "default_spec",
    "default_specs",
]

# Reader windows one question may cover: about 30,000 tokens with the default window and
# stride, so the default 100,000-character context of English text is read whole.
DEFAULT_QA_MAX_WINDOWS = 128


_DTYPES = frozenset({"auto", "float32", "float16", "bfloat16"})

# How an encoder task runs its forward pass (HFCORD_ENCODER_RUNTIME; models/onnx_runtime.py).
ENCODER_RUNTIMES = ("torch", "onnx", "onnx-int8")


@dataclass(frozen=True)
class ModelSpec:
    """One servable model: where it comes from and how it is batched.

    For encoder tasks ``max_batch`` is the number of requests gathered into one executor job;
    the runner sorts them by length and runs forward passes of ``forward_batch`` rows (inputs
    of similar length together, so padding stays small). For generation ``max_batch`` is the
    number of streams that may generate at the same time, decoded together (one batched forward
    pass per token), and ``generation_chunk_tokens`` the decoding steps per executor job.
    ``queue_depth`` bounds the requests waiting beyond that; past it requests fail fast with
    :class:`models.errors.QueueFull`. ``length_buckets`` are character-length edges: one job
    only holds requests from one bucket, so a very long input never joins short ones.

    With an ``engine`` the model runs on that server (``model_id`` is its name there) and the
    task's remote runner for ``engine.kind`` serves it; without one it is loaded in this process.

    Users see :attr:`name`, never ``model_id`` (for a local model that is a host path):
    ``display_name`` when given (e.g. "fine-tuned job #12"), else the folder's name or the hub
    id. ``max_windows`` bounds the reader windows one question answering request covers.

    ``runtime`` is how an encoder task runs its forward pass (``torch``, ``onnx``,
    ``onnx-int8``: see models/onnx_runtime.py); conversions are kept under ``runtime_cache``.
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
    max_windows: int = DEFAULT_QA_MAX_WINDOWS
    # encoder tasks: the runtime of the forward pass, and where its conversions are kept
    runtime: str = "torch"
    runtime_cache: str | None = field(default=None, compare=False)
    # free text shown by /models, e.g. "fine-tuned by job 12"
    description: str | None = field(default=None, compare=False)
    # what users see instead of model_id (see `name`)
    display_name: str | None = field(default=None, compare=False)
    # a remote inference engine serving the model (None: loaded in this process)
    engine: Engine | None = None

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
            "max_windows",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.runtime not in ENCODER_RUNTIMES:
            raise ValueError(f"runtime must be one of {ENCODER_RUNTIMES}, got {self.runtime!r}")
        if self.runtime != "torch" and not task_info(self.task).model_outputs:
            raise ValueError(f"{self.task} runs on torch only, not {self.runtime}")
        if self.max_wait_ms < 0:
            raise ValueError("max_wait_ms must not be negative")
        if self.max_answer_len < 1:
            raise ValueError("max_answer_len must be at least 1")
        if not 0 <= self.doc_stride < self.max_seq_len:
            raise ValueError("doc_stride must be between 0 and max_seq_len")
        if list(self.length_buckets) != sorted(self.length_buckets):
            raise ValueError("length_buckets must be increasing")

    @cached_property
    def name(self) -> str:
        """The model's name as users see it: ``display_name``, else a local folder's name
        (never its path), else the hub id."""
        return public_name(self.model_id, self.display_name)

    @property
    def backend(self) -> str:
        """``local`` (loaded in this process) or the engine's kind (e.g. ``openai``)."""
        return self.engine.kind if self.engine is not None else "local"

    @property
    def key(self) -> tuple[str, str, str | None, str | None, str, str, Engine | None]:
        """What identifies a loaded model: specs with the same key share one loaded copy."""
        return (
            self.task,
            self.model_id,
            self.revision,
            self.gguf_file,
            self.dtype,
            self.device,
            self.engine,
        )

    def with_model(
        self,
        model_id: str,
        *,
        revision: str | None = None,
        gguf_file: str | None = None,
        description: str | None = None,
        display_name: str | None = None,
    ) -> ModelSpec:
        """This spec's task and limits, serving another model (used for per-guild overrides:
        a server's own model is loaded in this process, whatever serves the default)."""
        # Leaving an engine, go back to the task's in-process limits (an engine takes more
        # streams at once than a model in this process).
        limits = dict(task_info(self.task).batching) if self.engine is not None else {}
        return replace(
            self,
            model_id=model_id,
            revision=revision,
            gguf_file=gguf_file,
            description=description,
            display_name=display_name,
            engine=None,
            **limits,  # type: ignore[arg-type]
        )


def default_spec(task: Task | str, model_id: str | None = None, **overrides: object) -> ModelSpec:
    """A spec for ``task`` serving ``model_id`` (default: the task's default model), on the
    task's batching defaults overridden by ``overrides`` (ModelSpec fields)."""
    info = task_info(task)
    values: dict[str, object] = {**info.batching, **overrides}
    return ModelSpec(
        task=info.task,
        model_id=model_id or info.default_model,
        **values,  # type: ignore[arg-type]
    )


def default_specs(
    models: Mapping[Task, str] | None = None,
    *,
    device: str = "cpu",
    overrides: Mapping[Task, Mapping[str, object]] | None = None,
) -> dict[Task, ModelSpec]:
    """One spec per task: ``models[task]`` (else the task's default model) on ``device``, with
    ``overrides[task]`` (ModelSpec fields) on top of the task's batching defaults."""
    models = models or {}
    overrides = overrides or {}
    return {
        task: default_spec(task, models.get(task), device=device, **overrides.get(task, {}))
        for task in Task
    }
