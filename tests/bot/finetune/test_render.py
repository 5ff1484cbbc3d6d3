"""The Discord texts of fine-tuning: status messages, results, lists and replies."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bot.finetune.progress import LiveProgress
from bot.finetune.records import FineTuneJob, GuildModel, RollbackResult
from bot.finetune.render import (
    cancel_text,
    completion_text,
    default_text,
    deleted_text,
    format_job,
    format_job_line,
    interrupted_text,
    job_list_text,
    promoted_text,
    rollback_text,
    status_overview_text,
)
from models.specs import Task
from models.training.datasets import TrainTask
from models.training.process import TrainingResult
from models.training.spec import JobStatus


def _job(**values: Any) -> FineTuneJob:
    job = FineTuneJob(
        id=3, guild_id=1, channel_id=2, status_message_id=None, requested_by=4,
        task=TrainTask.CAUSAL_LM, base_model="/srv/models/tiny-gpt2", data_source="poems.txt",
        params={}, status=JobStatus.FAILED, phase=None, step=None, max_steps=None, epoch=None,
        loss=None, eta_s=None, metrics={}, output_dir=None, plot_path=None,
        error="Out of memory.", created_at="2025-01-01T00:00:00Z", started_at=None,
        finished_at=None,
    )  # fmt: skip
    return replace(job, **values)


def _model(job_id: int) -> GuildModel:
    return GuildModel(
        id=job_id, guild_id=1, task=Task.SENTIMENT, job_id=job_id, model_path=f"/m/{job_id}",
        promoted_by=4, promoted_at="2025-01-01T00:00:00Z", previous_id=None,
        rolled_back_by=None, rolled_back_at=None,
    )  # fmt: skip


def test_format_job_hides_local_paths() -> None:
    text = format_job(_job())
    assert "base tiny-gpt2 ·" in text and "/srv" not in text and "Failed: Out of memory." in text


def test_models_show_their_label_and_names_are_escaped() -> None:
    """Issue 10, items 5 and 6: the stored label, never the folder; markdown in a file name or
    a label is shown as typed (no bold, no masked link)."""
    job = _job(
        base_model="/srv/hfcord/data/models/12",
        params={"base_model": {"label": "job #12", "job": 12}},
        data_source="**[win](https://evil.example)**_x_.csv",
        status=JobStatus.COMPLETED,
    )
    for text in (format_job(job), format_job_line(job), interrupted_text(job)):
        assert "job #12" in text and "/srv" not in text and "data/models" not in text
    # Both brackets escaped: no masked link. The bare address is kept as typed (Discord's link
    # rule runs to the next space, so the "**_x_" after it is part of the link, not markdown).
    assert r"\*\*\[win\](https://evil.example)**_x_.csv" in format_job(job)
    assert "**[" not in format_job_line(job)


def test_a_deleted_model_is_said_so() -> None:
    job = _job(status=JobStatus.COMPLETED, output_dir=None, metrics={"accuracy": 0.5})
    assert format_job(job).endswith("Its model was deleted.")
    assert "completed (model deleted)" in format_job_line(job)
    assert deleted_text(job, 2, 5) == (
        "Deleted the model of job #3; its record and metrics stay. This server keeps 2 of at "
        "most 5 fine-tuned models."
    )
    kept = _job(status=JobStatus.COMPLETED, output_dir="/m/3")
    assert format_job(kept).endswith("Serve it here with `/finetune promote job:3`.")


def test_running_job_shows_live_progress_over_the_stored_row() -> None:
    job = _job(
        status=JobStatus.QUEUED,
        params={"hyperparameters": {"epochs": 3.0, "learning_rate": 5e-05, "max_steps": None}},
        step=1,
        loss=0.9,
    )
    live = replace(LiveProgress.starting(), step=4, max_steps=10, epoch=0.4, eta_s=65.0)
    live.metrics = {"accuracy": 0.5}
    live.cancelling = True
    lines = format_job(job, live=live).splitlines()
    assert "**Fine-tune job #3** · causal-lm" in lines[0]
    assert lines[1] == "-# epochs 3.0, learning rate 5e-05"
    assert lines[2] == (  # the live status wins over the row's
        "Running (starting) · step 4/10 · epoch 0.40 · loss 0.9000 · eval accuracy 0.5000"
        " · ETA 1m05s · cancelling…"
    )


def test_queued_and_ended_jobs() -> None:
    queued = _job(status=JobStatus.QUEUED)
    assert format_job(queued, live=LiveProgress(position=2)).endswith("Queued (2 job(s) ahead).")
    assert format_job(queued).endswith("Queued.")
    done = _job(status=JobStatus.COMPLETED, metrics={"accuracy": 0.75, "steps": 12.0})
    assert "Completed: accuracy 0.7500, steps 12" in format_job(done)
    assert format_job(_job(status=JobStatus.CANCELLED)).endswith("Cancelled; nothing was saved.")


def test_completion_text_leads_with_the_primary_metric() -> None:
    job = _job(
        task=TrainTask.TEXT_CLASSIFICATION,
        status=JobStatus.COMPLETED,
        metrics={"accuracy": 0.75, "f1": 0.7},
    )
    result = TrainingResult(
        JobStatus.COMPLETED, job.metrics, "/m/3", primary_metric="accuracy", wall_s=3725.0
    )
    assert completion_text(job, result).splitlines() == [
        "✅ Fine-tune job #3 (text-classification) finished in 1h02m.",
        "**accuracy: 0.7500** on the validation data",
        "Metrics: f1 0.7000",
        "Serve it in this server with `/finetune promote job:3` "
        "(it replaces the sentiment model here only).",
    ]


def test_option_defaults_read_as_written() -> None:
    assert [default_text(v) for v in (3.0, 5e-5, 16, 128, 0.5)] == ["3", "5e-5", "16", "128", "0.5"]


def test_lists_and_replies() -> None:
    job = _job(status=JobStatus.CANCELLED)
    assert format_job_line(job) == (
        "**#3** · cancelled · causal-lm · tiny-gpt2 · poems.txt · 2025-01-01 00:00 UTC"
    )
    assert job_list_text([]).startswith("No fine-tuning jobs in this server yet")
    assert job_list_text([job]).startswith("**Fine-tuning jobs (newest first)**\n**#3**")
    assert status_overview_text(["a", "b"], "c") == "a\n\nb"
    assert status_overview_text([], "c") == "No job is running or queued. The latest one:\nc"
    assert status_overview_text([], None).startswith("No fine-tuning jobs")
    assert cancel_text(job, 30.0) == "Cancelled job #3 before it started."
    running = _job(status=JobStatus.RUNNING)
    assert "stopped within 30 s" in cancel_text(running, 30.0)
    assert promoted_text(_model(3)).startswith("Job #3's model now serves **sentiment**")
    result = RollbackResult(_model(3), None, (_model(2),))
    assert rollback_text(Task.SENTIMENT, result) == (
        "Rolled back **sentiment** in this server: the default model serves it again.\n"
        "-# Skipped job(s) #2: their models no longer load."
    )
    again = RollbackResult(_model(3), _model(1))
    assert rollback_text(Task.SENTIMENT, again).endswith("job #1's model serves it again.")
