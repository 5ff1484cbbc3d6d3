"""A job's live progress: what the worker last said, newer than the stored row."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from models.training.process import TrainingEvent
from models.training.spec import EventKind, JobStatus

T = TypeVar("T")


@dataclass
class LiveProgress:
    """Progress shown in a job's status message; ``None`` fields fall back to the stored job."""

    status: JobStatus | None = None  # RUNNING once its process starts (the row may lag)
    phase: str | None = None
    step: int | None = None
    max_steps: int | None = None
    epoch: float | None = None
    loss: float | None = None
    eta_s: float | None = None
    metrics: Mapping[str, float] | None = None  # the latest evaluation
    position: int | None = None  # queued: jobs ahead of it
    cancelling: bool = False

    @classmethod
    def starting(cls) -> LiveProgress:
        return cls(status=JobStatus.RUNNING, phase="starting")

    def apply(self, event: TrainingEvent) -> None:
        """Fold one worker event in (events the status message doesn't show are ignored)."""
        if event.kind == EventKind.PHASE:
            self.phase = event.phase
            if event.max_steps is not None:
                self.max_steps = event.max_steps
        elif event.kind == EventKind.PROGRESS:
            self.step = _newer(event.step, self.step)
            self.max_steps = _newer(event.max_steps, self.max_steps)
            self.epoch = _newer(event.epoch, self.epoch)
            self.loss = _newer(event.loss, self.loss)
            self.eta_s = _newer(event.eta_s, self.eta_s)
        elif event.kind == EventKind.EVAL:
            self.metrics = dict(event.metrics)


def _newer(value: T | None, old: T | None) -> T | None:
    return value if value is not None else old
