"""LiveProgress: worker events folded into what the status message shows."""

from __future__ import annotations

from bot.finetune.progress import LiveProgress
from models.training.process import TrainingEvent
from models.training.spec import JobStatus


def test_events_fold_into_live_progress() -> None:
    live = LiveProgress.starting()
    assert (live.status, live.phase) == (JobStatus.RUNNING, "starting")
    live.apply(TrainingEvent("phase", {"phase": "training", "max_steps": 30}))
    live.apply(TrainingEvent("dataset", {"train_examples": 100}))
    assert (live.phase, live.max_steps) == ("training", 30)
    live.apply(TrainingEvent("progress", {"step": 3, "epoch": 0.1, "loss": 0.5, "eta_s": 9.0}))
    live.apply(TrainingEvent("progress", {"step": 4, "loss": None}))  # a missing value keeps
    assert (live.step, live.max_steps, live.epoch, live.loss, live.eta_s) == (4, 30, 0.1, 0.5, 9.0)
    assert live.metrics is None
    live.apply(TrainingEvent("eval", {"step": 4, "metrics": {"accuracy": 0.5}}))
    assert live.metrics == {"accuracy": 0.5}
    live.apply(TrainingEvent("phase", {"phase": "saving"}))
    assert (live.phase, live.max_steps) == ("saving", 30)
