"""Model serving: specs, the registry and task runners. Nothing here imports discord.

This package's top level (and ``models.specs``, ``models.results``, ``models.errors``) does not
import torch, so cogs can use these names freely; the registry loads torch on first use.
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
from models.specs import GenerationParams, ModelSpec, Task, default_specs

__all__ = [
    "Answer",
    "ClassificationResult",
    "Entity",
    "GenerationParams",
    "GenerationStats",
    "InvalidInput",
    "InvalidModelRef",
    "LabelScore",
    "ModelError",
    "ModelLoading",
    "ModelSpec",
    "ModelStatus",
    "ModelUnavailable",
    "NERResult",
    "QAResult",
    "QueueFull",
    "Task",
    "default_specs",
]
