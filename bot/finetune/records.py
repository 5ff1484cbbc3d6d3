"""Fine-tuning jobs and per-server promotions as stored in SQLite (migration 0003).

A job row's ``base_model`` is the resolved reference the worker loads (a hub id or an absolute
folder); how Discord names it is in ``params["base_model"]["label"]``. A completed job whose
``output_dir`` is NULL had its model deleted (`/finetune delete`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.store import Store
from models.specs import Task
from models.training.datasets import TrainTask
from models.training.spec import JobStatus
from models.training.tasks import task_spec

# Which served task a fine-tuned model replaces when promoted (from the training task table).
SERVED_TASK: dict[TrainTask, Task] = {task: task_spec(task).served_as for task in TrainTask}

ACTIVE_STATUSES = tuple(status for status in JobStatus if status.is_active)
INTERRUPTED_REASON = "The bot restarted while this job was {status}; start it again if needed."

# SQLite's clock, as the migrations' column defaults write it.
_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


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
    status: JobStatus
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
        return self.status.is_active

    @property
    def base_label(self) -> str:
        """The base model as Discord shows it: a hub id, a folder's name, "job #12"."""
        label = (self.params.get("base_model") or {}).get("label")
        if isinstance(label, str) and label:
            return label
        # Rows from before labels were stored: never show a host path.
        return (
            Path(self.base_model).name if Path(self.base_model).is_absolute() else self.base_model
        )

    @property
    def base_job_id(self) -> int | None:
        """The job of this server whose model this one starts from, if any."""
        value = (self.params.get("base_model") or {}).get("job")
        return value if isinstance(value, int) else None

    @property
    def model_deleted(self) -> bool:
        """Completed, but its model was deleted since."""
        return self.status == JobStatus.COMPLETED and not self.output_dir

    def model_folder(self, models_dir: Path) -> Path | None:
        """The folder of this job's model (None: it has none). Rows written while the data
        folder was given as a relative path hold relative paths: those mean ``models_dir/<id>``."""
        if self.status != JobStatus.COMPLETED or not self.output_dir:
            return None
        path = Path(self.output_dir)
        return path if path.is_absolute() else models_dir / str(self.id)

    @classmethod
    def from_row(cls, row: Any) -> FineTuneJob:
        values = dict(row)
        values.pop("updated_at", None)
        values["task"] = TrainTask(values["task"])
        values["status"] = JobStatus(values["status"])
        values["params"] = json.loads(values["params"] or "{}")
        values["metrics"] = json.loads(values["metrics"] or "{}")
        return cls(**values)


@dataclass(frozen=True)
class GuildModel:
    """A promotion: ``model_path`` serves ``task`` in ``guild_id`` until rolled back."""

    id: int
    guild_id: int
    task: Task
    job_id: int | None
    model_path: str
    promoted_by: int
    promoted_at: str
    previous_id: int | None
    rolled_back_by: int | None
    rolled_back_at: str | None

    @classmethod
    def from_row(cls, row: Any) -> GuildModel:
        values = dict(row)
        values["task"] = Task(values["task"])
        return cls(**values)


@dataclass(frozen=True)
class RollbackResult:
    """What a rollback removed and what serves now."""

    removed: GuildModel
    serving: GuildModel | None  # None: the default model serves again
    skipped: tuple[GuildModel, ...] = ()  # promotions passed over: their models no longer load


class JobRepository:
    """Typed access to the ``finetune_jobs`` and ``guild_models`` tables."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def _jobs(self, query: str, args: Sequence[Any]) -> list[FineTuneJob]:
        async with self.store.conn.execute(query, tuple(args)) as cursor:
            rows = await cursor.fetchall()
        return [FineTuneJob.from_row(row) for row in rows]

    async def _one_job(self, query: str, args: Sequence[Any]) -> FineTuneJob | None:
        found = await self._jobs(query, args)
        return found[0] if found else None

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
        query = "SELECT * FROM finetune_jobs WHERE id = ?"
        return await self._one_job(query, (job_id,))

    async def list_for_guild(self, guild_id: int, limit: int = 10) -> list[FineTuneJob]:
        """A server's jobs, newest first."""
        query = "SELECT * FROM finetune_jobs WHERE guild_id = ? ORDER BY id DESC LIMIT ?"
        return await self._jobs(query, (guild_id, limit))

    async def with_status(self, *statuses: JobStatus) -> list[FineTuneJob]:
        marks = ", ".join("?" for _ in statuses)
        query = f"SELECT * FROM finetune_jobs WHERE status IN ({marks}) ORDER BY id"
        return await self._jobs(query, [str(status) for status in statuses])

    async def _update(self, job_id: int, **values: Any) -> None:
        # Column names come from this module only (keyword arguments), never from users.
        assignments = ", ".join(f"{name} = ?" for name in values)
        query = f"UPDATE finetune_jobs SET {assignments}, updated_at = {_NOW} WHERE id = ?"
        async with self.store.transaction() as conn:
            await conn.execute(query, (*values.values(), job_id))

    async def set_status_message(self, job_id: int, message_id: int) -> None:
        await self._update(job_id, status_message_id=message_id)

    async def mark_running(self, job_id: int) -> None:
        """A queued job starts (a job that ended meanwhile, e.g. cancelled, stays ended)."""
        query = f"""
            UPDATE finetune_jobs SET status = ?, started_at = {_NOW}, updated_at = {_NOW}
            WHERE id = ? AND status = ?
        """
        args = (str(JobStatus.RUNNING), job_id, str(JobStatus.QUEUED))
        async with self.store.transaction() as conn:
            await conn.execute(query, args)

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
        status: JobStatus,
        *,
        metrics: Mapping[str, float] | None = None,
        output_dir: str | None = None,
        plot_path: str | None = None,
        error: str | None = None,
    ) -> FineTuneJob:
        """Record how a job ended (only once: a finished job keeps its first outcome)."""
        marks = ", ".join("?" for _ in ACTIVE_STATUSES)
        query = f"""
            UPDATE finetune_jobs
            SET status = ?, metrics = COALESCE(?, metrics), output_dir = ?, plot_path = ?,
                error = ?, finished_at = {_NOW}, updated_at = {_NOW}
            WHERE id = ? AND status IN ({marks})
        """
        args = (
            str(status),
            json.dumps(dict(metrics)) if metrics is not None else None,
            output_dir,
            plot_path,
            error,
            job_id,
            *(str(active) for active in ACTIVE_STATUSES),
        )
        async with self.store.transaction() as conn:
            await conn.execute(query, args)
        job = await self.get(job_id)
        assert job is not None
        return job

    async def count_active(self, guild_id: int) -> int:
        """A server's queued and running jobs."""
        marks = ", ".join("?" for _ in ACTIVE_STATUSES)
        query = f"SELECT COUNT(*) FROM finetune_jobs WHERE guild_id = ? AND status IN ({marks})"
        return await self._count(query, (guild_id, *map(str, ACTIVE_STATUSES)))

    async def count_stored_models(self, guild_id: int) -> int:
        """A server's fine-tuned models on disk (completed jobs whose model is not deleted)."""
        query = """
            SELECT COUNT(*) FROM finetune_jobs
            WHERE guild_id = ? AND status = ? AND output_dir IS NOT NULL
        """
        return await self._count(query, (guild_id, str(JobStatus.COMPLETED)))

    async def _count(self, query: str, args: Sequence[Any]) -> int:
        async with self.store.conn.execute(query, tuple(args)) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row is not None else 0

    async def active_for_guild(self, guild_id: int) -> list[FineTuneJob]:
        marks = ", ".join("?" for _ in ACTIVE_STATUSES)
        query = (
            f"SELECT * FROM finetune_jobs WHERE guild_id = ? AND status IN ({marks}) ORDER BY id"
        )
        return await self._jobs(query, (guild_id, *map(str, ACTIVE_STATUSES)))

    async def completed_with_models(self) -> list[FineTuneJob]:
        """Every job whose model is kept on disk."""
        query = """
            SELECT * FROM finetune_jobs
            WHERE status = ? AND output_dir IS NOT NULL ORDER BY id
        """
        return await self._jobs(query, (str(JobStatus.COMPLETED),))

    async def forget_model(self, job_id: int) -> FineTuneJob:
        """Record that a completed job's model (and its curves) were deleted."""
        await self._update(job_id, output_dir=None, plot_path=None)
        job = await self.get(job_id)
        assert job is not None
        return job

    async def interrupt_unfinished(self) -> list[FineTuneJob]:
        """Mark jobs a previous process left queued or running as interrupted; returns them."""
        interrupted = []
        for job in await self.with_status(*ACTIVE_STATUSES):
            reason = INTERRUPTED_REASON.format(status=job.status)
            interrupted.append(await self.finish(job.id, JobStatus.INTERRUPTED, error=reason))
        return interrupted

    # -- promotions ------------------------------------------------------------------

    async def _models(self, query: str, args: Sequence[Any]) -> list[GuildModel]:
        async with self.store.conn.execute(query, tuple(args)) as cursor:
            rows = await cursor.fetchall()
        return [GuildModel.from_row(row) for row in rows]

    async def current_model(self, guild_id: int, task: Task) -> GuildModel | None:
        query = """
            SELECT * FROM guild_models
            WHERE guild_id = ? AND task = ? AND rolled_back_at IS NULL
            ORDER BY id DESC LIMIT 1
        """
        found = await self._models(query, (guild_id, str(task)))
        return found[0] if found else None

    async def promote(
        self, *, guild_id: int, task: Task, job_id: int | None, model_path: str, promoted_by: int
    ) -> GuildModel:
        query = """
            INSERT INTO guild_models (guild_id, task, job_id, model_path, promoted_by, previous_id)
            VALUES (?, ?, ?, ?, ?, (
                SELECT id FROM guild_models
                WHERE guild_id = ? AND task = ? AND rolled_back_at IS NULL
                ORDER BY id DESC LIMIT 1))
        """
        args = (guild_id, str(task), job_id, model_path, promoted_by, guild_id, str(task))
        async with self.store.transaction() as conn:
            await conn.execute(query, args)
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

    async def history(self, guild_id: int, task: Task) -> list[GuildModel]:
        """Every promotion of ``task`` in a server, newest first."""
        query = "SELECT * FROM guild_models WHERE guild_id = ? AND task = ? ORDER BY id DESC"
        return await self._models(query, (guild_id, str(task)))
