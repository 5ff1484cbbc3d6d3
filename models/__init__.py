"""Model serving: specs, the registry and task runners. Nothing here imports discord.

This package's top level (and ``models.specs``, ``models.tasks``, ``models.requests``,
``models.results``, ``models.errors``, ``models.refs``, ``models.streams``, ``models.registry``)
does not import torch, so cogs can use these names freely; the registry loads torch on first use.
"""

from __future__ import annotations

from models.errors import (
    InvalidInput,
    InvalidModelRef,
    ModelError,
    ModelLoading,
    ModelUnavailable,
    QueueFull,
)
from models.requests import (
    ChatMessage,
    ClassifyRequest,
    GenerationParams,
    GenerationRequest,
    NERRequest,
    QARequest,
)
from models.results import (
    Answer,
    ClassificationResult,
    Entity,
    GenerationStats,
    LabelScore,
    ModelStatus,
    NERResult,
    QAResult,
)
from models.specs import ModelSpec, default_spec, default_specs
from models.tasks import Task

__all__ = [
    "Answer",
    "ChatMessage",
    "ClassificationResult",
    "ClassifyRequest",
    "Entity",
    "GenerationParams",
    "GenerationRequest",
    "GenerationStats",
    "InvalidInput",
    "InvalidModelRef",
    "LabelScore",
    "ModelError",
    "ModelLoading",
    "ModelSpec",
    "ModelStatus",
    "ModelUnavailable",
    "NERRequest",
    "NERResult",
    "QARequest",
    "QAResult",
    "QueueFull",
    "Task",
    "default_spec",
    "default_specs",
]
