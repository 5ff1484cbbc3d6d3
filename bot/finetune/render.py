"""Every text fine-tuning shows in Discord: status messages, results, job lists, replies.

Models are shown by name, never by host path (`FineTuneJob.base_label`); names a user chose
(uploaded file names) and model names go through :func:`shown`, which neutralises markdown
(bold, links, headings) so they read as typed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from bot.finetune.progress import LiveProgress
from bot.finetune.records import SERVED_TASK, FineTuneJob, GuildModel, RollbackResult
from bot.finetune.requests import SubmittedJob
from bot.text import format_duration, plain
from models.specs import Task
from models.training.process import TrainingResult
from models.training.spec import JobStatus

T = TypeVar("T")

NO_JOBS = "No fine-tuning jobs in this server yet; start one with `/finetune start`."

_STATE_ICON = {
    JobStatus.QUEUED: "⏳",
    JobStatus.RUNNING: "🛠️",
    JobStatus.COMPLETED: "✅",
    JobStatus.FAILED: "❌",
    JobStatus.CANCELLED: "🛑",
    JobStatus.INTERRUPTED: "⚠️",
}


def default_text(value: float) -> str:
    """A default as option help shows it: 3, 16, 5e-5."""
    if float(value).is_integer():
        return str(int(value))
    mantissa, _, exponent = f"{value:g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def format_number(value: float) -> str:
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:.4f}"


def shown(name: str) -> str:
    """A file or model name as text in a message: one line, markdown neutralised."""
    return plain(" ".join(name.split()))


def format_metrics(metrics: Mapping[str, float], *, skip: Sequence[str] = ()) -> str:
    return ", ".join(f"{k} {format_number(v)}" for k, v in metrics.items() if k not in skip)


def format_job(job: FineTuneJob, *, live: LiveProgress | None = None) -> str:
    """The status message of a job (``live`` holds the newest progress, not yet stored)."""
    live = live or LiveProgress()
    icon = _STATE_ICON.get(job.status, "•")
    lines = [
        f"{icon} **Fine-tune job #{job.id}** · {job.task.value} · base {shown(job.base_label)}"
        f" · data {shown(job.data_source)}",
    ]
    params = job.params.get("hyperparameters", {})
    if params:
        chosen = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in params.items() if v is not None)
        lines.append(f"-# {chosen}")
    status = live.status or job.status
    if status == JobStatus.RUNNING:
        lines.append(_running_line(job, live))
    elif status == JobStatus.QUEUED:
        ahead = f" ({live.position} job(s) ahead)" if live.position else ""
        lines.append(f"Queued{ahead}.")
    elif status == JobStatus.COMPLETED:
        lines.append("Completed: " + (format_metrics(job.metrics) or "no metrics"))
        if job.model_deleted:
            lines.append("Its model was deleted.")
        else:
            lines.append(f"Serve it here with `/finetune promote job:{job.id}`.")
    elif status == JobStatus.FAILED:
        lines.append(f"Failed: {job.error or 'no reason given'}")
    elif status == JobStatus.CANCELLED:
        lines.append("Cancelled; nothing was saved.")
    elif status == JobStatus.INTERRUPTED:
        lines.append(f"Interrupted: {job.error or ''}")
    return "\n".join(lines)


def _newest(value: T | None, stored: T | None) -> T | None:
    return value if value is not None else stored


def _running_line(job: FineTuneJob, live: LiveProgress) -> str:
    phase = live.phase or job.phase or "starting"
    parts = [f"Running ({phase.replace('_', ' ')})"]
    step = _newest(live.step, job.step)
    if step is not None:
        parts.append(f"step {step}/{_newest(live.max_steps, job.max_steps) or '?'}")
    epoch = _newest(live.epoch, job.epoch)
    if epoch is not None:
        parts.append(f"epoch {epoch:.2f}")
    loss = _newest(live.loss, job.loss)
    if loss is not None:
        parts.append(f"loss {loss:.4f}")
    eval_metrics = live.metrics if live.metrics is not None else job.metrics
    if eval_metrics:
        parts.append("eval " + format_metrics(eval_metrics))
    eta_s = _newest(live.eta_s, job.eta_s)
    if eta_s is not None:
        parts.append(f"ETA {format_duration(eta_s)}")
    if live.cancelling:
        parts.append("cancelling…")
    return " · ".join(parts)


def completion_text(job: FineTuneJob, result: TrainingResult) -> str:
    """Posted when a job completes (with its curves)."""
    metrics = dict(job.metrics)
    primary = result.primary_metric
    head = f"✅ Fine-tune job #{job.id} ({job.task.value}) finished"
    if result.wall_s is not None:
        head += f" in {format_duration(result.wall_s)}"
    lines = [head + "."]
    if primary and primary in metrics:
        lines.append(f"**{primary}: {format_number(metrics[primary])}** on the validation data")
    lines.append("Metrics: " + (format_metrics(metrics, skip=(primary or "",)) or "none"))
    lines.append(
        f"Serve it in this server with `/finetune promote job:{job.id}` "
        f"(it replaces the {SERVED_TASK[job.task]} model here only)."
    )
    return "\n".join(lines)


def curves_filename(job: FineTuneJob) -> str:
    return f"finetune-{job.id}-curves.png"


def failure_text(job: FineTuneJob, error: str) -> str:
    return f"❌ Fine-tune job #{job.id} failed: {error}"


def interrupted_text(job: FineTuneJob) -> str:
    return (
        f"⚠️ Fine-tune job #{job.id} ({job.task.value}, {shown(job.base_label)}) "
        "was interrupted by a bot restart; nothing was saved. "
        "Start it again with `/finetune start`."
    )


# --------------------------------------------------------------------------- replies


def _code_block(text: str) -> str:
    # Sample rows are user data: keep them from closing the block early.
    return "```\n" + text.replace("```", "'''") + "\n```"


def format_submitted(submitted: SubmittedJob, channel_mention: str) -> str:
    job = submitted.job
    when = (
        "starts now"
        if submitted.position == 0
        else f"is queued ({submitted.position} job(s) ahead of it)"
    )
    parts = [
        f"Fine-tune job **#{job.id}** {when}; its progress is posted in {channel_mention}.",
        "**Training data**",
        _code_block(submitted.train.describe()),
    ]
    if submitted.validation is not None:
        parts += ["**Validation data**", _code_block(submitted.validation.describe())]
    else:
        parts.append("-# No validation data given: 10% of the training data is held out.")
    return "\n".join(parts)


def format_job_line(job: FineTuneJob) -> str:
    deleted = " (model deleted)" if job.model_deleted else ""
    return (
        f"**#{job.id}** · {job.status}{deleted} · {job.task.value} · {shown(job.base_label)} · "
        f"{shown(job.data_source)} · {job.created_at[:16].replace('T', ' ')} UTC"
    )


def job_list_text(jobs: Sequence[FineTuneJob]) -> str:
    """`/finetune list`: the jobs given, newest first."""
    if not jobs:
        return NO_JOBS
    return "**Fine-tuning jobs (newest first)**\n" + "\n".join(map(format_job_line, jobs))


def status_overview_text(active: Sequence[str], latest: str | None) -> str:
    """`/finetune status` without a job: the status texts of active jobs, oldest first, or the
    latest job's when none is active."""
    if active:
        return "\n\n".join(active)
    if latest is not None:
        return "No job is running or queued. The latest one:\n" + latest
    return NO_JOBS


def cancel_text(job: FineTuneJob, grace_s: float) -> str:
    if job.status == JobStatus.CANCELLED:
        return f"Cancelled job #{job.id} before it started."
    return (
        f"Cancelling job #{job.id}: it stops after the current step "
        f"(or is stopped within {grace_s:.0f} s). Nothing is saved."
    )


def deleted_text(job: FineTuneJob, stored: int, allowed: int) -> str:
    return (
        f"Deleted the model of job #{job.id}; its record and metrics stay. This server keeps "
        f"{stored} of at most {allowed} fine-tuned models."
    )


def promoted_text(model: GuildModel) -> str:
    return (
        f"Job #{model.job_id}'s model now serves **{model.task}** in this server; other servers "
        f"keep their model. Undo with `/finetune rollback task:{model.task}`."
    )


def rollback_text(task: Task, result: RollbackResult) -> str:
    if result.serving is None:
        now = "the default model serves it again"
    else:
        now = f"job #{result.serving.job_id}'s model serves it again"
    text = f"Rolled back **{task}** in this server: {now}."
    if result.skipped:
        gone = ", ".join(f"#{m.job_id}" for m in result.skipped)
        text += f"\n-# Skipped job(s) {gone}: their models no longer load."
    return text
