"""The training curves a finished job posts: loss by step, and the validation metric."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_curves(history: list[dict[str, Any]], primary: str, path: Path, *, title: str) -> Path:
    """Training loss (and eval loss) by step on the left, the eval metric on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train_pts = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["step"], h["eval"]) for h in history if "eval" in h]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    try:
        if train_pts:
            ax_loss.plot(*zip(*train_pts, strict=True), label="training loss")
        eval_loss = [(s, m["loss"]) for s, m in evals if "loss" in m]
        if eval_loss:
            ax_loss.plot(*zip(*eval_loss, strict=True), "o-", label="validation loss")
        ax_loss.set_xlabel("step")
        ax_loss.set_ylabel("loss")
        ax_loss.legend()
        ax_loss.grid(alpha=0.3)
        metric_pts = [(s, m[primary]) for s, m in evals if primary in m]
        if metric_pts:
            ax_metric.plot(*zip(*metric_pts, strict=True), "o-", color="tab:green")
        ax_metric.set_xlabel("step")
        ax_metric.set_ylabel(f"validation {primary}")
        ax_metric.grid(alpha=0.3)
        fig.suptitle(title[:90])
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
