"""Fine-tuning jobs from Discord: their SQLite records and the manager that runs them.

`JobRepository` keeps jobs and per-server promotions in SQLite (migration 0003).
`FineTuneManager` validates a request off the event loop, queues it, runs at most
``settings.finetune_max_concurrent`` training processes (`models.training.TrainingProcess`)
and edits one status message per job in its channel. Channel messages, not the interaction,
carry progress: an interaction token expires after 15 minutes and training takes longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import discord

from bot.errors import UserFacingError
from bot.reply import edit_message, send_to_channel
from bot.settings import Settings
from bot.store import Store
from models.training.datasets import (
    ColumnSpec,
    DatasetError,
    DatasetSummary,
    ParsedDataset,
    TrainTask,
    check_validation,
    load_hub_dataset,
    parse_dataset,
)
from models.training.process import TrainingEvent, TrainingProcess, TrainingResult
from models.training.spec import (
    EVENT_DATASET,
    EVENT_EVAL,
    EVENT_FINAL,
    EVENT_PHASE,
    EVENT_PROGRESS,
    DataSource,
    JobSpec,
    JobSpecError,
)

if TYPE_CHECKING:
    from bot.client import HFCordBot

log = logging.getLogger(__name__)

QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
INTERRUPTED = "interrupted"
ACTIVE_STATUSES = (QUEUED, RUNNING)

# Which served task a fine-tuned model replaces when promoted.
SERVED_TASK: dict[TrainTask, str] = {
    TrainTask.TEXT_CLASSIFICATION: "sentiment",
    TrainTask.TOKEN_CLASSIFICATION: "ner",
    TrainTask.QUESTION_ANSWERING: "qa",
    TrainTask.CAUSAL_LM: "generation",
}

TRAIN_FILE = "train.data"
VALIDATION_FILE = "validation.data"
INTERRUPTED_REASON = "The bot restarted while this job was {status}; start it again if needed."
_STATE_ICON = {
    QUEUED: "⏳",
    RUNNING: "🛠️",
    COMPLETED: "✅",
    FAILED: "❌",
    CANCELLED: "🛑",
    INTERRUPTED: "⚠️",
}


class FineTuneError(UserFacingError):
    """A fine-tuning request or action refused; the message says why and what to do."""


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class FineTuneJob:
    """One fine-tuning job as stored."""

    id: int
    guild_id: int
    channel_id: int
    status_message_id: int | None
    requested_by: int
    task: TrainTask
    base_model: str
    data_source: str
    params: Mapping[str, Any]
    status: str
    phase: str | None
    step: int | None
    max_steps: int | None
    epoch: float | None
    loss: float | None
    eta_s: float | None
    metrics: Mapping[str, float]
    output_dir: str | None
    plot_path: str | None
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @classmethod
    def from_row(cls, row: Any) -> FineTuneJob:
        values = dict(row)
        values.pop("updated_at", None)
        values["task"] = TrainTask(values["task"])
        values["params"] = json.loads(values["params"] or "{}")
        values["metrics"] = json.loads(values["metrics"] or "{}")
        return cls(**values)


@dataclass(frozen=True)
class GuildModel:
    """A promotion: ``model_path`` serves ``task`` in ``guild_id`` until rolled back."""

    id: int
    guild_id: int
    task: str
    job_id: int | None
    model_path: str
    promoted_by: int
    promoted_at: str
    previous_id: int | None
    rolled_back_by: int | None
    rolled_back_at: str | None


_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


class JobRepository:
    """Typed access to the ``finetune_jobs`` and ``guild_models`` tables."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def _one_job(self, query: str, args: Sequence[Any]) -> FineTuneJob | None:
        async with self.store.conn.execute(query, tuple(args)) as cursor:
            row = await cursor.fetchone()
        return FineTuneJob.from_row(row) if row is not None else None

    async def _jobs(self, query: str, args: Sequence[Any]) -> list[FineTuneJob]:
        async with self.store.conn.execute(query, tuple(args)) as cursor:
            rows = await cursor.fetchall()
        return [FineTuneJob.from_row(row) for row in rows]

    async def create(
        self,
        *,
        guild_id: int,
        channel_id: int,
        requested_by: int,
        task: TrainTask,
        base_model: str,
        data_source: str,
        params: Mapping[str, Any],
    ) -> FineTuneJob:
        query = """
            INSERT INTO finetune_jobs
                (guild_id, channel_id, requested_by, task, base_model, data_source, params)
            VALUES (?, ?, ?, ?, ?, ?, ?)
        """
        args = (
            guild_id,
            channel_id,
            requested_by,
            task.value,
            base_model,
            data_source,
            json.dumps(params),
        )
        async with self.store.transaction() as conn:
            cursor = await conn.execute(query, args)
            job_id = cursor.lastrowid
        job = await self.get(int(job_id or 0))
        assert job is not None
        return job

    async def get(self, job_id: int) -> FineTuneJob | None:
        return await self._one_job("SELECT * FROM finetune_jobs WHERE id = ?", (job_id,))

    async def list_for_guild(self, guild_id: int, limit: int = 10) -> list[FineTuneJob]:
        query = "SELECT * FROM finetune_jobs WHERE guild_id = ? ORDER BY id DESC LIMIT ?"
        return await self._jobs(query, (guild_id, limit))

    async def with_status(self, *statuses: str) -> list[FineTuneJob]:
        marks = ", ".join("?" for _ in statuses)
        query = f"SELECT * FROM finetune_jobs WHERE status IN ({marks}) ORDER BY id"
        return await self._jobs(query, statuses)

    async def _update(self, job_id: int, **values: Any) -> None:
        # Column names come from this module only (keyword arguments), never from users.
        assignments = ", ".join(f"{name} = ?" for name in values)
        query = f"UPDATE finetune_jobs SET {assignments}, updated_at = {_NOW} WHERE id = ?"
        async with self.store.transaction() as conn:
            await conn.execute(query, (*values.values(), job_id))

    async def set_status_message(self, job_id: int, message_id: int) -> None:
        await self._update(job_id, status_message_id=message_id)

    async def mark_running(self, job_id: int) -> None:
        query = f"""
            UPDATE finetune_jobs SET status = 'running', started_at = {_NOW}, updated_at = {_NOW}
            WHERE id = ? AND status = 'queued'
        """
        async with self.store.transaction() as conn:
            await conn.execute(query, (job_id,))

    async def update_progress(
        self,
        job_id: int,
        *,
        phase: str | None,
        step: int | None,
        max_steps: int | None,
        epoch: float | None,
        loss: float | None,
        eta_s: float | None,
        metrics: Mapping[str, float],
    ) -> None:
        await self._update(
            job_id,
            phase=phase,
            step=step,
            max_steps=max_steps,
            epoch=epoch,
            loss=loss,
            eta_s=eta_s,
            metrics=json.dumps(dict(metrics)),
        )

    async def finish(
        self,
        job_id: int,
        status: str,
        *,
        metrics: Mapping[str, float] | None = None,
        output_dir: str | None = None,
        plot_path: str | None = None,
        error: str | None = None,
    ) -> FineTuneJob:
        """Record how a job ended (only once: a finished job keeps its first outcome)."""
        query = f"""
            UPDATE finetune_jobs
            SET status = ?, metrics = COALESCE(?, metrics), output_dir = ?, plot_path = ?,
                error = ?, finished_at = {_NOW}, updated_at = {_NOW}
            WHERE id = ? AND status IN ('queued', 'running')
        """
        args = (
            status,
            json.dumps(dict(metrics)) if metrics is not None else None,
            output_dir,
            plot_path,
            error,
            job_id,
        )
        async with self.store.transaction() as conn:
            await conn.execute(query, args)
        job = await self.get(job_id)
        assert job is not None
        return job

    async def interrupt_unfinished(self) -> list[FineTuneJob]:
        """Mark jobs a previous process left queued or running as interrupted; returns them."""
        interrupted = []
        for job in await self.with_status(*ACTIVE_STATUSES):
            reason = INTERRUPTED_REASON.format(status=job.status)
            interrupted.append(await self.finish(job.id, INTERRUPTED, error=reason))
        return interrupted

    # -- promotions ------------------------------------------------------------------

    async def _models(self, query: str, args: Sequence[Any]) -> list[GuildModel]:
        async with self.store.conn.execute(query, tuple(args)) as cursor:
            rows = await cursor.fetchall()
        return [GuildModel(**dict(row)) for row in rows]

    async def current_model(self, guild_id: int, task: str) -> GuildModel | None:
        query = """
            SELECT * FROM guild_models
            WHERE guild_id = ? AND task = ? AND rolled_back_at IS NULL
            ORDER BY id DESC LIMIT 1
        """
        found = await self._models(query, (guild_id, task))
        return found[0] if found else None

    async def promote(
        self, *, guild_id: int, task: str, job_id: int | None, model_path: str, promoted_by: int
    ) -> GuildModel:
        insert = """
            INSERT INTO guild_models (guild_id, task, job_id, model_path, promoted_by, previous_id)
            VALUES (?, ?, ?, ?, ?, (
                SELECT id FROM guild_models
                WHERE guild_id = ? AND task = ? AND rolled_back_at IS NULL
                ORDER BY id DESC LIMIT 1))
        """
        args = (guild_id, task, job_id, model_path, promoted_by, guild_id, task)
        async with self.store.transaction() as conn:
            await conn.execute(insert, args)
        current = await self.current_model(guild_id, task)
        assert current is not None
        return current

    async def roll_back(self, model_id: int, user_id: int) -> None:
        query = f"""
            UPDATE guild_models SET rolled_back_by = ?, rolled_back_at = {_NOW}
            WHERE id = ? AND rolled_back_at IS NULL
        """
        async with self.store.transaction() as conn:
            await conn.execute(query, (user_id, model_id))

    async def current_models(self) -> list[GuildModel]:
        """The promotion serving each (guild, task) that has one."""
        query = """
            SELECT * FROM guild_models AS g
            WHERE rolled_back_at IS NULL AND id = (
                SELECT MAX(id) FROM guild_models
                WHERE guild_id = g.guild_id AND task = g.task AND rolled_back_at IS NULL)
            ORDER BY guild_id, task
        """
        return await self._models(query, ())

    async def history(self, guild_id: int, task: str) -> list[GuildModel]:
        query = "SELECT * FROM guild_models WHERE guild_id = ? AND task = ? ORDER BY id DESC"
        return await self._models(query, (guild_id, task))


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Upload:
    """A data file given in Discord: its name (for messages) and bytes."""

    filename: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class HubData:
    """A hub dataset split given as ``name[:config]`` and a split."""

    name: str
    config: str | None = None
    split: str = "train"

    @classmethod
    def parse(cls, value: str, split: str | None, *, default_split: str = "train") -> HubData:
        name, _, config = value.strip().partition(":")
        if not name.strip():
            raise FineTuneError("Write the hub dataset as `name` or `name:config`.")
        return cls(name.strip(), config.strip() or None, (split or default_split).strip())

    def describe(self) -> str:
        return f"{self.name}{':' + self.config if self.config else ''} [{self.split}]"


DataInput = Upload | HubData


@dataclass(frozen=True)
class JobRequest:
    """Everything `/finetune start` asks for (validated by `FineTuneManager.submit`)."""

    guild_id: int
    channel_id: int
    requested_by: int
    task: TrainTask
    base_model: str
    train: DataInput
    validation: DataInput | None = None
    columns: ColumnSpec = field(default_factory=ColumnSpec)
    epochs: float = 3.0
    learning_rate: float = 5e-5
    batch_size: int = 16
    max_length: int = 128
    max_steps: int | None = None

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "max_steps": self.max_steps,
        }


@dataclass(frozen=True)
class SubmittedJob:
    """A job accepted into the queue, with what validation found."""

    job: FineTuneJob
    train: DatasetSummary
    validation: DatasetSummary | None
    position: int  # 0: starts now; n: n jobs ahead of it


def _describe_input(data: DataInput) -> str:
    return data.filename if isinstance(data, Upload) else f"hub {data.describe()}"


def _load_input(data: DataInput, task: TrainTask, columns: ColumnSpec) -> ParsedDataset:
    if isinstance(data, Upload):
        return parse_dataset(data.data, task, filename=data.filename, columns=columns)
    return load_hub_dataset(data.name, task, config=data.config, split=data.split, columns=columns)


def _validate_request(
    request: JobRequest, check_dir: Path
) -> tuple[DatasetSummary, DatasetSummary | None]:
    """Blocking: parameters, then the data parsed exactly as the worker will parse it."""
    try:
        JobSpec(
            task=request.task,
            base_model=request.base_model,
            train=DataSource(path=str(check_dir / TRAIN_FILE)),
            output_dir=str(check_dir),
            **request.hyperparameters(),
        ).check()
        train = _load_input(request.train, request.task, request.columns)
        validation = None
        if request.validation is not None:
            validation = _load_input(request.validation, request.task, request.columns)
            check_validation(train, validation)
    except (DatasetError, JobSpecError) as exc:
        raise FineTuneError(str(exc)) from None
    return train.summary(), validation.summary() if validation is not None else None


def _source_params(data: DataInput | None, file_name: str) -> dict[str, Any] | None:
    if data is None:
        return None
    if isinstance(data, Upload):
        return asdict(DataSource(path=file_name, display_name=data.filename))
    return asdict(DataSource(hub_name=data.name, hub_config=data.config, hub_split=data.split))


def _write_inputs(folder: Path, request: JobRequest) -> None:
    folder.mkdir(parents=True, exist_ok=False)
    if isinstance(request.train, Upload):
        (folder / TRAIN_FILE).write_bytes(request.train.data)
    if isinstance(request.validation, Upload):
        (folder / VALIDATION_FILE).write_bytes(request.validation.data)


# --------------------------------------------------------------------------- formatting


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _number(value: float) -> str:
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:.4f}"


def model_label(ref: str) -> str:
    """A model ref as shown in Discord: a hub id, or just a local folder's name."""
    return Path(ref).name if ("/" in ref and Path(ref).is_absolute()) else ref


def format_metrics(metrics: Mapping[str, float], *, skip: Sequence[str] = ()) -> str:
    return ", ".join(f"{k} {_number(v)}" for k, v in metrics.items() if k not in skip)


def format_job(job: FineTuneJob, *, live: Mapping[str, Any] | None = None) -> str:
    """The status message of a job (``live`` holds the newest progress, not yet stored)."""
    state = dict(live or {})
    icon = _STATE_ICON.get(job.status, "•")
    lines = [
        f"{icon} **Fine-tune job #{job.id}** · {job.task.value} · base `{model_label(job.base_model)}`"
        f" · data `{job.data_source}`",
    ]
    params = job.params.get("hyperparameters", {})
    if params:
        shown = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in params.items() if v is not None)
        lines.append(f"-# {shown}")
    status = state.get("status", job.status)
    if status == RUNNING:
        phase = state.get("phase") or job.phase or "starting"
        parts = [f"Running ({str(phase).replace('_', ' ')})"]
        step, max_steps = state.get("step", job.step), state.get("max_steps", job.max_steps)
        if step is not None:
            parts.append(f"step {step}/{max_steps or '?'}")
        epoch = state.get("epoch", job.epoch)
        if epoch is not None:
            parts.append(f"epoch {epoch:.2f}")
        loss = state.get("loss", job.loss)
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        eval_metrics = state.get("metrics", job.metrics)
        if eval_metrics:
            parts.append("eval " + format_metrics(eval_metrics))
        if state.get("eta_s", job.eta_s) is not None:
            parts.append(f"ETA {_duration(state.get('eta_s', job.eta_s))}")
        if state.get("cancelling"):
            parts.append("cancelling…")
        lines.append(" · ".join(parts))
    elif status == QUEUED:
        position = state.get("position")
        ahead = f" ({position} job(s) ahead)" if position else ""
        lines.append(f"Queued{ahead}.")
    elif status == COMPLETED:
        lines.append("Completed: " + (format_metrics(job.metrics) or "no metrics"))
        lines.append(f"Serve it here with `/finetune promote job:{job.id}`.")
    elif status == FAILED:
        lines.append(f"Failed: {job.error or 'no reason given'}")
    elif status == CANCELLED:
        lines.append("Cancelled; nothing was saved.")
    elif status == INTERRUPTED:
        lines.append(f"Interrupted: {job.error or ''}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the manager


@dataclass
class _Running:
    job_id: int
    process: TrainingProcess | None = None
    message: discord.Message | None = None
    live: dict[str, Any] = field(default_factory=dict)
    cancel_requested: bool = False


class FineTuneManager:
    """Queues and runs fine-tuning jobs, reports them in Discord, promotes their models."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        python: str = sys.executable,
        status_interval_s: float = 5.0,
        cancel_grace_s: float = 30.0,
        progress_interval_s: float = 2.0,
    ) -> None:
        self.settings = settings
        self.repo = JobRepository(store)
        self.store = store
        self.python = python
        self.status_interval_s = status_interval_s
        self.cancel_grace_s = cancel_grace_s
        self.progress_interval_s = progress_interval_s
        self.jobs_dir = settings.data_dir / "jobs"
        self._bot: HFCordBot | None = None
        self._queue: deque[int] = deque()  # queued job ids, oldest first
        self._entries: dict[int, _Running] = {}  # queued and running jobs of this process
        self._active: set[int] = set()  # job ids whose run has begun
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False
        self._closing = False
        self._lock_fd: int | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, bot: HFCordBot) -> None:
        """Mark jobs left by a previous process interrupted, restore promotions, report."""
        if self._started:
            return
        self._bot = bot
        self._started = True
        self._closing = False
        if not self._take_ownership():
            # Another bot process (or a playground) runs jobs for this data folder: its jobs
            # are not ours to mark interrupted, and new ones would race with it.
            log.warning(
                "another hfcord process runs fine-tuning for %s; jobs are disabled here",
                self.settings.data_dir,
            )
            await self.restore_promotions()
            return
        interrupted = await self.repo.interrupt_unfinished()
        await self.restore_promotions()
        if interrupted:
            log.warning("%d fine-tune job(s) were interrupted by a restart", len(interrupted))
            self._spawn(self._report_interrupted(interrupted), "finetune-report-interrupted")

    def _take_ownership(self) -> bool:
        """One process per data folder runs jobs: hold an exclusive lock while started."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.settings.data_dir / "fine-tuning.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    @property
    def owns_jobs(self) -> bool:
        return self._lock_fd is not None

    async def restore_promotions(self) -> int:
        """Serve every stored promotion again (loaded on first use); returns how many."""
        registry = self._bot.registry if self._bot is not None else None
        if registry is None:
            return 0
        restored = 0
        for model in await self.repo.current_models():
            try:
                await registry.set_guild_override(
                    model.guild_id, model.task, model.model_path, preload=False
                )
            except Exception:
                # A deleted folder must not stop the bot; the default model serves instead.
                log.warning(
                    "could not restore %s for %s in guild %s",
                    model.model_path,
                    model.task,
                    model.guild_id,
                    exc_info=True,
                )
            else:
                restored += 1
        return restored

    async def close(self) -> None:
        """Stop following jobs and kill their processes; the next start marks them interrupted."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        for entry in list(self._entries.values()):
            if entry.process is not None:
                entry.process.kill()
        for entry in list(self._entries.values()):
            if entry.process is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(entry.process.wait(), 10)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._entries.clear()
        self._active.clear()
        self._queue.clear()
        self._started = False
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- submitting ------------------------------------------------------------------

    async def submit(self, request: JobRequest) -> SubmittedJob:
        """Validate (off the event loop), record, stage the data and queue the job."""
        if self._bot is None or self._closing:
            raise FineTuneError("Fine-tuning isn't running on this bot right now; try again later.")
        if not self.owns_jobs:
            raise FineTuneError(
                "Another hfcord process using the same data folder runs fine-tuning jobs; "
                "start jobs from that one."
            )
        staging = self.jobs_dir / f".incoming-{uuid.uuid4().hex}"
        train_summary, validation_summary = await asyncio.to_thread(
            _validate_request, request, staging
        )
        params = {
            "hyperparameters": request.hyperparameters(),
            "columns": asdict(request.columns),
            "train": _source_params(request.train, TRAIN_FILE),
            "validation": _source_params(request.validation, VALIDATION_FILE),
            "train_examples": train_summary.num_examples,
        }
        # Data first (in a staging folder), then the row, then the folder takes the job's id:
        # a failure at any step leaves no job without its data.
        await asyncio.to_thread(_write_inputs, staging, request)
        job: FineTuneJob | None = None
        try:
            job = await self.repo.create(
                guild_id=request.guild_id,
                channel_id=request.channel_id,
                requested_by=request.requested_by,
                task=request.task,
                base_model=request.base_model,
                data_source=_describe_input(request.train),
                params=params,
            )
            await asyncio.to_thread(staging.rename, self.jobs_dir / str(job.id))
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, staging, True)
            if job is not None:
                await self.repo.finish(job.id, FAILED, error="Its data could not be stored.")
            raise
        await self.store.audit(
            guild_id=request.guild_id,
            user_id=request.requested_by,
            action="finetune.start",
            detail=f"job {job.id}: {request.task.value} on {request.base_model} "
            f"with {job.data_source}",
        )
        self._queue.append(job.id)
        entry = _Running(job.id)
        self._entries[job.id] = entry
        position = self._position(job.id)
        entry.live["position"] = position
        message = await self._post(job, format_job(job, live=entry.live))
        if message is not None:
            entry.message = message
            await self.repo.set_status_message(job.id, message.id)
        self._pump()
        return SubmittedJob(job, train_summary, validation_summary, position)

    def _position(self, job_id: int) -> int:
        """How many jobs must finish or start before this queued one can start."""
        if job_id not in self._queue:
            return 0
        free = self.settings.finetune_max_concurrent - len(self._active)
        return max(0, self._queue.index(job_id) - free + 1)

    def _pump(self) -> None:
        """Start queued jobs while there is room."""
        started = False
        while (
            not self._closing
            and self._queue
            and len(self._active) < self.settings.finetune_max_concurrent
        ):
            job_id = self._queue.popleft()
            self._active.add(job_id)
            self._spawn(self._run(job_id), f"finetune-job-{job_id}")
            started = True
        if started and self._queue:
            self._spawn(self._refresh_queued(), "finetune-queue-positions")

    async def _refresh_queued(self) -> None:
        for job_id in list(self._queue):
            entry = self._entries.get(job_id)
            job = await self.repo.get(job_id)
            if entry is None or job is None:
                continue
            entry.live["position"] = self._position(job_id)
            await self._edit(entry, job)

    # -- running ---------------------------------------------------------------------

    def _spec_for(self, job: FineTuneJob) -> JobSpec:
        run_dir = self.jobs_dir / str(job.id)
        params = job.params

        def source(value: Mapping[str, Any] | None) -> DataSource | None:
            if value is None:
                return None
            values = dict(value)
            if values.get("path") is not None:
                values["path"] = str(run_dir / values["path"])
            return DataSource(**values)

        train = source(params["train"])
        assert train is not None
        return JobSpec(
            task=job.task,
            base_model=job.base_model,
            train=train,
            validation=source(params.get("validation")),
            columns=ColumnSpec(**params.get("columns", {})),
            output_dir=str(self.settings.models_dir / str(job.id)),
            torch_threads=self.settings.torch_threads,
            device=self.settings.device,
            progress_interval_s=self.progress_interval_s,
            **params["hyperparameters"],
        )

    async def _run(self, job_id: int) -> None:
        entry = self._entries.get(job_id) or _Running(job_id)
        self._entries[job_id] = entry
        try:
            job = await self.repo.get(job_id)
            if job is None or job.status != QUEUED:
                return
            if entry.cancel_requested:
                job = await self.repo.finish(job_id, CANCELLED)
                await self._edit(entry, job)
                return
            await self.repo.mark_running(job_id)
            entry.live = {"status": RUNNING, "phase": "starting"}
            await self._edit(entry, job)
            try:
                spec = self._spec_for(job)
                process = await TrainingProcess.start(
                    spec, run_dir=self.jobs_dir / str(job_id), python=self.python
                )
            except Exception as exc:
                log.exception("fine-tune job %s could not start", job_id)
                result = TrainingResult(
                    FAILED, {}, None, error=f"The training process could not start: {exc}"
                )
            else:
                entry.process = process
                if entry.cancel_requested:
                    self._spawn(process.cancel(self.cancel_grace_s), f"finetune-cancel-{job_id}")
                result = await self._follow(entry, job, process)
                if result.status == FAILED:
                    log.warning(
                        "fine-tune job %s failed: %s\nworker log tail:\n%s",
                        job_id,
                        result.error,
                        process.log_tail(),
                    )
            await self._finish(entry, job, result)
        except asyncio.CancelledError:
            raise  # the bot is closing: the next start marks this job interrupted
        except Exception as exc:
            log.exception("fine-tune job %s: following it failed", job_id)
            with contextlib.suppress(Exception):
                if entry.process is not None:
                    entry.process.kill()
                job = await self.repo.finish(
                    job_id, FAILED, error=f"The bot lost track of this job ({type(exc).__name__})."
                )
                entry.live = {}
                await self._edit(entry, job)
        finally:
            self._entries.pop(job_id, None)
            self._active.discard(job_id)
            if not self._closing:
                self._pump()

    async def _follow(
        self, entry: _Running, job: FineTuneJob, process: TrainingProcess
    ) -> TrainingResult:
        """Apply events as they come; store and show them at most every status_interval_s."""
        last_shown = time.monotonic()
        async for event in process:
            if event.kind == EVENT_FINAL:
                break
            _apply(entry.live, event)
            now = time.monotonic()
            if now - last_shown >= self.status_interval_s:
                last_shown = now
                live = entry.live
                await self.repo.update_progress(
                    job.id,
                    phase=live.get("phase"),
                    step=live.get("step"),
                    max_steps=live.get("max_steps"),
                    epoch=live.get("epoch"),
                    loss=live.get("loss"),
                    eta_s=live.get("eta_s"),
                    metrics=live.get("metrics", {}),
                )
                await self._edit(entry, job)
        return await process.wait()

    async def _finish(self, entry: _Running, job: FineTuneJob, result: TrainingResult) -> None:
        status = result.status if result.status in (COMPLETED, CANCELLED) else FAILED
        error = result.error if status == FAILED else None
        if status == FAILED and not error:
            error = "The training process ended without saying why."
        finished = await self.repo.finish(
            job.id,
            status,
            metrics=result.metrics,
            output_dir=result.output_dir if status == COMPLETED else None,
            plot_path=result.plot if status == COMPLETED else None,
            error=error,
        )
        entry.live = {}
        await self._edit(entry, finished)
        if status == COMPLETED:
            await self._post(finished, _completion_text(finished, result), plot=finished.plot_path)
        elif status == FAILED:
            await self._post(finished, f"❌ Fine-tune job #{finished.id} failed: {error}")

    # -- Discord ---------------------------------------------------------------------

    def _channel(self, channel_id: int) -> discord.abc.Messageable:
        assert self._bot is not None
        channel = self._bot.get_channel(channel_id)
        if isinstance(channel, discord.abc.Messageable):
            return channel
        # Not cached (e.g. an archived thread): sending needs only the id.
        return self._bot.get_partial_messageable(channel_id)

    async def _post(
        self, job: FineTuneJob, content: str, *, plot: str | None = None
    ) -> discord.Message | None:
        if self._bot is None:
            return None
        file = None
        png = await asyncio.to_thread(_read_file, plot) if plot is not None else None
        if png is not None:
            file = discord.File(io.BytesIO(png), filename=f"finetune-{job.id}-curves.png")
        try:
            return await send_to_channel(self._channel(job.channel_id), content, file=file)
        except discord.HTTPException as exc:
            log.warning("could not post about fine-tune job %s: %s", job.id, exc)
            return None

    async def _edit(self, entry: _Running, job: FineTuneJob) -> None:
        if entry.message is None:
            return
        try:
            await edit_message(entry.message, format_job(job, live=entry.live))
        except discord.HTTPException as exc:
            log.warning("could not edit the status of fine-tune job %s: %s", job.id, exc)

    async def _report_interrupted(self, jobs: Sequence[FineTuneJob]) -> None:
        assert self._bot is not None
        await self._bot.wait_until_ready()
        for job in jobs:
            if job.status_message_id is not None:
                channel = self._bot.get_partial_messageable(job.channel_id)
                old = channel.get_partial_message(job.status_message_id)
                with contextlib.suppress(discord.HTTPException):
                    await edit_message(cast(discord.Message, old), format_job(job))
            await self._post(
                job,
                f"⚠️ Fine-tune job #{job.id} ({job.task.value}, `{model_label(job.base_model)}`) "
                "was interrupted by a bot restart; nothing was saved. "
                "Start it again with `/finetune start`.",
            )

    # -- admin actions ---------------------------------------------------------------

    async def job_in_guild(self, job_id: int, guild_id: int) -> FineTuneJob:
        job = await self.repo.get(job_id)
        if job is None or job.guild_id != guild_id:
            raise FineTuneError(f"There is no fine-tune job #{job_id} in this server.")
        return job

    def process_of(self, job_id: int) -> TrainingProcess | None:
        """The training process of a job this bot is running (None when not running here)."""
        entry = self._entries.get(job_id)
        return entry.process if entry is not None else None

    def describe(self, job: FineTuneJob) -> str:
        """The job's status text, with live progress when this process runs it."""
        entry = self._entries.get(job.id)
        live = dict(entry.live) if entry is not None else {}
        if job.id in self._queue:
            live["position"] = self._position(job.id)
        return format_job(job, live=live)

    async def cancel(self, job_id: int, guild_id: int, user_id: int) -> FineTuneJob:
        """Cancel a queued job at once, or ask a running one to stop (killed after a grace)."""
        job = await self.job_in_guild(job_id, guild_id)
        if not job.active:
            raise FineTuneError(
                f"Job #{job_id} is already {job.status}; there is nothing to cancel."
            )
        if not self.owns_jobs:
            raise FineTuneError(
                "Another hfcord process using the same data folder runs this job; cancel it there."
            )
        await self.store.audit(
            guild_id=guild_id, user_id=user_id, action="finetune.cancel", detail=f"job {job_id}"
        )
        entry = self._entries.get(job_id)
        if job_id in self._queue or entry is None:
            with contextlib.suppress(ValueError):
                self._queue.remove(job_id)
            self._entries.pop(job_id, None)
            job = await self.repo.finish(job_id, CANCELLED)
            if entry is not None:
                entry.live = {}
                await self._edit(entry, job)
            self._spawn(self._refresh_queued(), "finetune-queue-positions")
            return job
        entry.cancel_requested = True
        entry.live["cancelling"] = True
        if entry.process is not None:
            self._spawn(entry.process.cancel(self.cancel_grace_s), f"finetune-cancel-{job_id}")
        await self._edit(entry, job)
        return job

    async def promote(self, job_id: int, guild_id: int, user_id: int) -> GuildModel:
        """Serve a completed job's model for its task in this server, at once."""
        registry = self._bot.registry if self._bot is not None else None
        if registry is None:
            raise FineTuneError("Models are switched off on this bot; nothing can be promoted.")
        job = await self.job_in_guild(job_id, guild_id)
        if job.status != COMPLETED or not job.output_dir:
            raise FineTuneError(
                f"Job #{job_id} is {job.status}; only a completed job's model can be promoted."
            )
        if not await asyncio.to_thread(Path(job.output_dir).is_dir):
            raise FineTuneError(f"The model of job #{job_id} is no longer on disk.")
        task = SERVED_TASK[job.task]
        current = await self.repo.current_model(guild_id, task)
        if current is not None and current.job_id == job_id:
            raise FineTuneError(f"Job #{job_id}'s model already serves {task} in this server.")
        # Loads first: if it can't load, the old model keeps serving and nothing is recorded.
        await registry.set_guild_override(guild_id, task, job.output_dir, preload=True)
        model = await self.repo.promote(
            guild_id=guild_id,
            task=task,
            job_id=job_id,
            model_path=job.output_dir,
            promoted_by=user_id,
        )
        await self.store.audit(
            guild_id=guild_id,
            user_id=user_id,
            action="finetune.promote",
            detail=f"job {job_id} now serves {task}",
        )
        return model

    async def rollback(self, guild_id: int, task: str, user_id: int) -> RollbackResult:
        """Serve the model promoted before the current one (or the default) for ``task``."""
        registry = self._bot.registry if self._bot is not None else None
        if registry is None:
            raise FineTuneError("Models are switched off on this bot; nothing to roll back.")
        current = await self.repo.current_model(guild_id, task)
        if current is None:
            raise FineTuneError(
                f"No fine-tuned model is promoted for {task} in this server; "
                "the default model already serves it."
            )
        await self.repo.roll_back(current.id, user_id)
        skipped: list[GuildModel] = []
        while True:
            serving = await self.repo.current_model(guild_id, task)
            if serving is None:
                await registry.clear_guild_override(guild_id, task)
                break
            try:
                await registry.set_guild_override(guild_id, task, serving.model_path, preload=True)
                break
            except Exception:
                # Its folder was deleted or no longer loads: fall back further.
                log.warning("rollback: %s no longer loads", serving.model_path, exc_info=True)
                await self.repo.roll_back(serving.id, user_id)
                skipped.append(serving)
        await self.store.audit(
            guild_id=guild_id,
            user_id=user_id,
            action="finetune.rollback",
            detail=f"{task}: job {current.job_id} removed; now "
            + (f"job {serving.job_id}" if serving is not None else "the default model"),
        )
        return RollbackResult(current, serving, tuple(skipped))


@dataclass(frozen=True)
class RollbackResult:
    removed: GuildModel
    serving: GuildModel | None  # None: the default model serves again
    skipped: tuple[GuildModel, ...] = ()


def _read_file(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def _apply(live: dict[str, Any], event: TrainingEvent) -> None:
    """Fold one worker event into the live progress shown in the status message."""
    data = event.data
    if event.kind == EVENT_PHASE:
        live["phase"] = event.phase
        if data.get("max_steps") is not None:
            live["max_steps"] = data["max_steps"]
    elif event.kind == EVENT_DATASET:
        live["train_examples"] = data.get("train_examples")
    elif event.kind == EVENT_PROGRESS:
        for key in ("step", "max_steps", "epoch", "loss", "eta_s"):
            if data.get(key) is not None:
                live[key] = data[key]
    elif event.kind == EVENT_EVAL:
        live["metrics"] = dict(event.metrics)


def _completion_text(job: FineTuneJob, result: TrainingResult) -> str:
    metrics = dict(job.metrics)
    primary = result.primary_metric
    head = f"✅ Fine-tune job #{job.id} ({job.task.value}) finished"
    if result.wall_s is not None:
        head += f" in {_duration(result.wall_s)}"
    lines = [head + "."]
    if primary and primary in metrics:
        lines.append(f"**{primary}: {_number(metrics[primary])}** on the validation data")
    lines.append("Metrics: " + (format_metrics(metrics, skip=(primary or "",)) or "none"))
    lines.append(
        f"Serve it in this server with `/finetune promote job:{job.id}` "
        f"(it replaces the {SERVED_TASK[job.task]} model here only)."
    )
    return "\n".join(lines)
