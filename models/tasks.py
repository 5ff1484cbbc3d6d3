"""The task table: everything that differs between tasks, in one place (no torch import here).

For each :class:`Task`: the runner that serves it, the transformers Auto class that loads it, its
request and result types, its batching defaults, the setting that names its model and the model
used when that setting is unset, and whether its tokenizer must be a fast one. The registry,
the loader and the settings read this table; nothing else branches on the task.

Adding a task is one entry here and one runner under ``models/runners/`` (a ``Runner`` for a
batched task, a ``StreamRunner`` for a streamed one); ``ModelRegistry.submit`` serves any
batched request type listed here. Serving a task from a remote engine is one more runner, named
in the task's ``remote_runners`` under the engine's kind (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from models.requests import (
    ClassifyRequest,
    EmbedRequest,
    GenerationRequest,
    NERRequest,
    QARequest,
)
from models.results import (
    ClassificationResult,
    EmbeddingResult,
    GenerationStats,
    NERResult,
    QAResult,
)


class Task(StrEnum):
    """The tasks the registry serves; values are the names used in settings, CLI and Discord."""

    GENERATION = "generation"
    SENTIMENT = "sentiment"
    NER = "ner"
    QA = "qa"
    EMBEDDING = "embedding"


@dataclass(frozen=True, eq=False)
class TaskInfo:
    """One task's entry in :data:`TASKS`."""

    task: Task
    # "module:Class" of the runner, imported when a model loads (runners import torch).
    runner: str
    # The transformers Auto class that loads a checkpoint for this task.
    auto_model: str
    request_type: type
    result_type: type
    # Streamed tasks get a StreamRunner and stream slots; the others a Runner behind a
    # MicroBatcher.
    streamed: bool
    # The environment variable (setting) naming the task's model, and its default.
    setting: str
    default_model: str
    # Character offsets (NER entities, QA spans) need a fast tokenizer's offset mapping.
    needs_fast_tokenizer: bool
    # ModelSpec field values for this task (see ModelSpec for what each bounds).
    batching: Mapping[str, object]
    # "module:Class" of the runner per remote engine kind (ModelSpec.engine.kind): it is built
    # from the spec alone, with no model loaded here. A kind missing here cannot serve the task.
    remote_runners: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # The model outputs the runner reads; an encoder runtime other than torch
    # (models/onnx_runtime.py) computes these. Empty: the task runs on torch only.
    model_outputs: tuple[str, ...] = ()

    def runner_class(self, backend: str = "local") -> type:
        """The runner class for ``backend`` ("local", or an engine kind); importing a local
        runner imports torch."""
        path = self.runner if backend == "local" else self.remote_runners.get(backend)
        if path is None:
            raise ValueError(f"{self.task} cannot be served by a {backend} engine")
        module, _, name = path.partition(":")
        cls: type = getattr(importlib.import_module(module), name)
        return cls


TASKS: Mapping[Task, TaskInfo] = MappingProxyType(
    {
        Task.GENERATION: TaskInfo(
            Task.GENERATION,
            runner="models.runners.generation:LocalGenerationRunner",
            auto_model="AutoModelForCausalLM",
            request_type=GenerationRequest,
            result_type=GenerationStats,
            streamed=True,
            setting="HFCORD_GENERATION_MODEL",
            default_model="gpt2",
            needs_fast_tokenizer=False,
            # Streams decoded together, one batched forward pass per token (see
            # models/continuous.py): 8 at once gave 3x one stream's tokens/s on 2 shared cores.
            batching=MappingProxyType({"max_batch": 8, "queue_depth": 32}),
            remote_runners=MappingProxyType(
                {"openai": "models.runners.openai_chat:OpenAIChatRunner"}
            ),
        ),
        Task.SENTIMENT: TaskInfo(
            Task.SENTIMENT,
            runner="models.runners.classification:ClassificationRunner",
            auto_model="AutoModelForSequenceClassification",
            request_type=ClassifyRequest,
            result_type=ClassificationResult,
            streamed=False,
            setting="HFCORD_SENTIMENT_MODEL",
            default_model="distilbert-base-uncased-finetuned-sst-2-english",
            needs_fast_tokenizer=False,
            batching=MappingProxyType({"max_batch": 64, "max_wait_ms": 5.0, "queue_depth": 256}),
            model_outputs=("logits",),
        ),
        Task.NER: TaskInfo(
            Task.NER,
            runner="models.runners.token_classification:TokenClassificationRunner",
            auto_model="AutoModelForTokenClassification",
            request_type=NERRequest,
            result_type=NERResult,
            streamed=False,
            setting="HFCORD_NER_MODEL",
            default_model="dbmdz/bert-large-cased-finetuned-conll03-english",
            needs_fast_tokenizer=True,
            batching=MappingProxyType({"max_batch": 32, "max_wait_ms": 5.0, "queue_depth": 128}),
            model_outputs=("logits",),
        ),
        Task.QA: TaskInfo(
            Task.QA,
            runner="models.runners.question_answering:QuestionAnsweringRunner",
            auto_model="AutoModelForQuestionAnswering",
            request_type=QARequest,
            result_type=QAResult,
            streamed=False,
            setting="HFCORD_QA_MODEL",
            default_model="distilbert-base-cased-distilled-squad",
            needs_fast_tokenizer=True,
            batching=MappingProxyType(
                {"max_batch": 8, "forward_batch": 8, "max_wait_ms": 5.0, "queue_depth": 64}
            ),
            model_outputs=("start_logits", "end_logits"),
        ),
        Task.EMBEDDING: TaskInfo(
            Task.EMBEDDING,
            runner="models.runners.embedding:EmbeddingRunner",
            auto_model="AutoModel",
            request_type=EmbedRequest,
            result_type=EmbeddingResult,
            streamed=False,
            setting="HFCORD_EMBEDDING_MODEL",
            default_model="sentence-transformers/all-MiniLM-L6-v2",
            needs_fast_tokenizer=False,
            # A question is one text; indexing sends a few passages per request, so
            # max_batch requests hold a few dozen texts, run forward_batch rows per pass.
            batching=MappingProxyType(
                {"max_batch": 16, "forward_batch": 32, "max_wait_ms": 5.0, "queue_depth": 128}
            ),
            model_outputs=("last_hidden_state",),
        ),
    }
)


def task_info(task: Task | str) -> TaskInfo:
    """The table entry for ``task`` (a :class:`Task` or its name)."""
    return TASKS[Task(task)]


def task_of(request: object) -> Task:
    """The task that serves ``request``, found by its type."""
    for info in TASKS.values():
        if type(request) is info.request_type:
            return info.task
    raise TypeError(f"no task serves {type(request).__name__}")
