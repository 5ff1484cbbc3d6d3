"""Task runners: the interfaces in :mod:`models.runners.base` (torch-free), one module per
runner (these import torch; the task table names them and the registry imports them on load)."""

from __future__ import annotations

from models.runners.base import (
    AnyRunner,
    CancelFlag,
    DeviceRun,
    EngineRunner,
    Features,
    Runner,
    StreamRunner,
    batch_steps,
    process_batch,
)

__all__ = [
    "AnyRunner",
    "CancelFlag",
    "DeviceRun",
    "EngineRunner",
    "Features",
    "Runner",
    "StreamRunner",
    "batch_steps",
    "process_batch",
]
