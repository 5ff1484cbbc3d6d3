"""The fine-tuning manager: queue, run, cancel; promote and roll back what serves a server.

`FineTuneManager` validates a request off the event loop, queues it, runs at most
``settings.finetune_max_concurrent`` training processes (`models.training.TrainingProcess`)
and keeps one status message per job up to date in its channel. Channel messages, not the
interaction, carry progress: an interaction token expires after 15 minutes and training takes
longer. It reports through a `JobReporter` and switches models through a `ModelSwitch`
(`bot.finetune.interfaces`), so it runs without Discord in tests.

One process per data folder runs jobs (an exclusive lock on ``fine-tuning.lock``): a second bot
or a playground on the same folder neither starts jobs nor marks the first one's interrupted.

Fair use: a server has at most ``finetune_max_active_jobs`` jobs queued or running and keeps at
most ``finetune_max_stored_models`` fine-tuned models (admins delete one with `delete_model`).
A job's inputs (``jobs/<id>/``) and any partial output are removed when it ends; what a previous
process left (its jobs are interrupted by then) is swept when the owner starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import sys
import time
import uuid
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bot.finetune import render
from bot.finetune.base_models import check_parameters as check_model_size
from bot.finetune.base_models import resolve_base_model
from bot.finetune.files import JobFiles
from bot.finetune.interfaces import JobReporter, ModelSwitch, Picture
from bot.finetune.progress import LiveProgress
from bot.finetune.promotions import Promotions
from bot.finetune.records import (
    SERVED_TASK,
    FineTuneJob,
    GuildModel,
    JobRepository,
    RollbackResult,
)
from bot.finetune.requests import (
    FineTuneError,
    JobRequest,
    SubmittedJob,
    check_parameters,
    spec_for_job,
    stage_inputs,
    summarize_staged,
)
from bot.isolation import IsolationLimits
from bot.settings import Settings
from bot.store import Store
from models.background import log_failures
from models.specs import Task
from models.training.datasets import DataLimits
from models.training.process import TrainingProcess, TrainingResult
from models.training.spec import EventKind, JobStatus

log = logging.getLogger(__name__)

LOCK_FILE = "fine-tuning.lock"


@dataclass
class _Entry:
    """A job this process has queued or is running."""

    job_id: int
    process: TrainingProcess | None = None
    status_message_id: int | None = None
    progress: LiveProgress = field(default_factory=LiveProgress)
    cancel_requested: bool = False


class FineTuneManager:
    """Queues and runs fine-tuning jobs, reports them, promotes their models."""

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
        self.python = python
        self.status_interval_s = status_interval_s  # at most one status edit this often
        self.cancel_grace_s = cancel_grace_s  # a cancelled worker is killed after this
        self.progress_interval_s = progress_interval_s  # the worker's progress events
        self.jobs_dir = settings.data_dir / "jobs"
        self.models_dir = settings.models_dir
        self._files = JobFiles(self.jobs_dir, self.models_dir)
        self._store = store
        self._repo = JobRepository(store)
        self._promotions = Promotions(
            self._repo,
            store,
            models_dir=settings.models_dir,
            max_parameters=settings.finetune_max_parameters,
        )
        self._submit_lock = asyncio.Lock()  # a server's quota is checked and taken at once
        self._reporter: JobReporter | None = None
        self._queue: deque[int] = deque()  # queued job ids, oldest first
        self._entries: dict[int, _Entry] = {}  # queued and running jobs of this process
        self._active: set[int] = set()  # job ids whose run has begun
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False
        self._closing = False
        self._lock_fd: int | None = None

    # -- lifecycle (the app starts and closes the manager) ---------------------------

    async def start(self, reporter: JobReporter, models: ModelSwitch | None) -> None:
        """Mark jobs left by a previous process interrupted, restore promotions, and report
        the interrupted jobs once ``reporter`` is ready. ``models`` is None when the bot
        serves no models (nothing can be promoted then)."""
        if self._started:
            return
        self._reporter = reporter
        self._promotions.models = models
        self._started = True
        self._closing = False
        if not self._take_ownership():
            # Another bot process (or a playground) runs jobs for this data folder: its jobs
            # are not ours to mark interrupted, and new ones would race with it.
            log.warning(
                "another hfcord process runs fine-tuning for %s; jobs are disabled here",
                self.settings.data_dir,
            )
            await self._promotions.restore()
            return
        interrupted = await self._repo.interrupt_unfinished()
        kept = {job.id for job in await self._repo.completed_with_models()}
        await asyncio.to_thread(self._files.sweep, kept)
        await self._promotions.restore()
        if interrupted:
            log.warning("%d fine-tune job(s) were interrupted by a restart", len(interrupted))
            self._spawn(self._report_interrupted(interrupted), "finetune-report-interrupted")

    def _take_ownership(self) -> bool:
        """One process per data folder runs jobs: hold an exclusive lock while started."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.settings.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    @property
    def owns_jobs(self) -> bool:
        """Whether this process runs the data folder's jobs."""
        return self._lock_fd is not None

    async def close(self) -> None:
        """Stop following jobs and kill their processes; the next start marks them interrupted."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        processes = [e.process for e in self._entries.values() if e.process is not None]
        for process in processes:
            process.kill()
        for process in processes:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(process.wait(), 10)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._entries.clear()
        self._active.clear()
        self._queue.clear()
        self._started = False
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A task held until it ends (close() cancels the rest), its failure logged."""
        task = log_failures(asyncio.create_task(coro, name=name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- reading ---------------------------------------------------------------------

    async def job(self, job_id: int) -> FineTuneJob | None:
        return await self._repo.get(job_id)

    async def recent_jobs(self, guild_id: int, limit: int = 10) -> list[FineTuneJob]:
        """A server's latest jobs, newest first."""
        return await self._repo.list_for_guild(guild_id, limit)

    async def job_in_guild(self, job_id: int, guild_id: int) -> FineTuneJob:
        """The job, if it belongs to this server; else a `FineTuneError` saying there is none."""
        job = await self._repo.get(job_id)
        if job is None or job.guild_id != guild_id:
            raise FineTuneError(f"There is no fine-tune job #{job_id} in this server.")
        return job

    def describe(self, job: FineTuneJob) -> str:
        """The job's status text, with live progress when this process runs it."""
        entry = self._entries.get(job.id)
        live = replace(entry.progress) if entry is not None else LiveProgress()
        if job.id in self._queue:
            live.position = self._position(job.id)
        return render.format_job(job, live=live)

    # -- submitting ------------------------------------------------------------------

    @property
    def data_limits(self) -> DataLimits:
        return DataLimits(
            max_rows=self.settings.finetune_max_rows,
            max_bytes=self.settings.finetune_hub_max_bytes,
        )

    async def submit(self, request: JobRequest) -> SubmittedJob:
        """Check the request (quotas, base model, data parsed in an isolated process), record
        it, stage the data and queue the job."""
        if not self._started or self._closing:
            raise FineTuneError("Fine-tuning isn't running on this bot right now; try again later.")
        if not self.owns_jobs:
            raise FineTuneError(
                "Another hfcord process using the same data folder runs fine-tuning jobs; "
                "start jobs from that one."
            )
        check_parameters(request)
        await self._check_quota(request.guild_id)
        settings = self.settings
        base = await resolve_base_model(
            request.base_model,
            request.guild_id,
            self._repo,
            models_dir=self.models_dir,
            model_roots=settings.model_roots,
            data_dir=settings.data_dir,
        )
        await check_model_size(base, settings.finetune_max_parameters)
        isolation = IsolationLimits(
            memory_mb=settings.parse_memory_mb, timeout_s=settings.parse_timeout_s
        )
        # Data first (staged, then checked from those very files), then the row, then the
        # folder takes the job's id: a failure at any step leaves no job without its data.
        staging = self.jobs_dir / f".incoming-{uuid.uuid4().hex}"
        job: FineTuneJob | None = None
        try:
            await asyncio.to_thread(stage_inputs, staging, request)
            train, validation = await asyncio.to_thread(
                summarize_staged, request, staging, self.data_limits, isolation
            )
            async with self._submit_lock:
                await self._check_quota(request.guild_id)  # others may have taken it meanwhile
                job = await self._repo.create(
                    guild_id=request.guild_id,
                    channel_id=request.channel_id,
                    requested_by=request.requested_by,
                    task=request.task,
                    base_model=base.location,
                    data_source=request.data_source,
                    params=request.stored_params(train.num_examples, base),
                )
            await asyncio.to_thread(staging.rename, self.jobs_dir / str(job.id))
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, staging, True)
            if job is not None:
                await self._repo.finish(
                    job.id, JobStatus.FAILED, error="Its data could not be stored."
                )
            raise
        await self._store.audit(
            guild_id=request.guild_id,
            user_id=request.requested_by,
            action="finetune.start",
            detail=f"job {job.id}: {request.task.value} on {base.label} with {job.data_source}",
        )
        self._queue.append(job.id)
        entry = _Entry(job.id)
        self._entries[job.id] = entry
        position = self._position(job.id)
        entry.progress.position = position
        message_id = await self._post(job, render.format_job(job, live=entry.progress))
        if message_id is not None:
            entry.status_message_id = message_id
            await self._repo.set_status_message(job.id, message_id)
        self._pump()
        return SubmittedJob(job, train, validation, position)

    async def _check_quota(self, guild_id: int) -> None:
        """Refuse a new job when the server has as many active jobs, or as many stored models
        (active jobs included: each will store one), as it may."""
        settings = self.settings
        active = await self._repo.count_active(guild_id)
        if active >= settings.finetune_max_active_jobs:
            raise FineTuneError(
                f"This server already has {active} fine-tuning job(s) queued or running, the "
                f"most it may have; wait for one to end or cancel one with `/finetune cancel`."
            )
        stored = await self._repo.count_stored_models(guild_id)
        if stored + active >= settings.finetune_max_stored_models:
            raise FineTuneError(
                f"This server keeps {stored} fine-tuned model(s)"
                + (f" and has {active} job(s) on the way" if active else "")
                + f"; it may keep {settings.finetune_max_stored_models}. Delete one with "
                "`/finetune delete job:<number>` first."
            )

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
            job = await self._repo.get(job_id)
            if entry is None or job is None:
                continue
            entry.progress.position = self._position(job_id)
            await self._show(entry, job)

    # -- running ---------------------------------------------------------------------

    async def _run(self, job_id: int) -> None:
        entry = self._entries.get(job_id) or _Entry(job_id)
        self._entries[job_id] = entry
        try:
            job = await self._repo.get(job_id)
            if job is None or job.status != JobStatus.QUEUED:
                return
            if entry.cancel_requested:
                job = await self._repo.finish(job_id, JobStatus.CANCELLED)
                await self._show(entry, job)
                return
            await self._repo.mark_running(job_id)
            entry.progress = LiveProgress.starting()
            await self._show(entry, job)
            result = await self._train(entry, job)
            await self._finish(entry, job, result)
        except asyncio.CancelledError:
            raise  # the bot is closing: the next start marks this job interrupted
        except Exception as exc:
            log.exception("fine-tune job %s: following it failed", job_id)
            with contextlib.suppress(Exception):
                if entry.process is not None:
                    entry.process.kill()
                job = await self._repo.finish(
                    job_id,
                    JobStatus.FAILED,
                    error=f"The bot lost track of this job ({type(exc).__name__}).",
                )
                entry.progress = LiveProgress()
                await self._show(entry, job)
        finally:
            self._entries.pop(job_id, None)
            self._active.discard(job_id)
            if not self._closing:
                # When closing, the next start sweeps (the worker may still be dying now).
                await asyncio.to_thread(self._files.discard_inputs, job_id)
                self._pump()

    async def _train(self, entry: _Entry, job: FineTuneJob) -> TrainingResult:
        """Start the job's training process and follow it to its end."""
        try:
            spec = spec_for_job(
                job,
                run_dir=self.jobs_dir / str(job.id),
                output_dir=self.models_dir / str(job.id),
                torch_threads=self.settings.torch_threads,
                device=self.settings.device,
                progress_interval_s=self.progress_interval_s,
                limits=self.data_limits,
                max_parameters=self.settings.finetune_max_parameters,
            )
            process = await TrainingProcess.start(
                spec, run_dir=self.jobs_dir / str(job.id), python=self.python
            )
        except Exception:
            log.exception("fine-tune job %s could not start", job.id)
            return TrainingResult(
                JobStatus.FAILED,
                {},
                None,
                error="The training process could not start; the bot's operator can find why "
                "in the bot's log.",
            )
        entry.process = process
        if entry.cancel_requested:
            self._spawn(process.cancel(self.cancel_grace_s), f"finetune-cancel-{job.id}")
        result = await self._follow(entry, job, process)
        if result.status == JobStatus.FAILED:
            log.warning(
                "fine-tune job %s failed: %s\nworker log tail:\n%s",
                job.id,
                result.error,
                process.log_tail(),
            )
        return result

    async def _follow(
        self, entry: _Entry, job: FineTuneJob, process: TrainingProcess
    ) -> TrainingResult:
        """Apply events as they come; store and show them at most every status_interval_s."""
        last_shown = time.monotonic()
        async for event in process:
            if event.kind == EventKind.FINAL:
                break
            entry.progress.apply(event)
            now = time.monotonic()
            if now - last_shown >= self.status_interval_s:
                last_shown = now
                live = entry.progress
                await self._repo.update_progress(
                    job.id,
                    phase=live.phase,
                    step=live.step,
                    max_steps=live.max_steps,
                    epoch=live.epoch,
                    loss=live.loss,
                    eta_s=live.eta_s,
                    metrics=live.metrics or {},
                )
                await self._show(entry, job)
        return await process.wait()

    async def _finish(self, entry: _Entry, job: FineTuneJob, result: TrainingResult) -> None:
        status = result.status
        if status not in (JobStatus.COMPLETED, JobStatus.CANCELLED):
            status = JobStatus.FAILED
        error = result.error if status == JobStatus.FAILED else None
        if status == JobStatus.FAILED and not error:
            error = "The training process ended without saying why."
        completed = status == JobStatus.COMPLETED
        finished = await self._repo.finish(
            job.id,
            status,
            metrics=result.metrics,
            output_dir=result.output_dir if completed else None,
            plot_path=result.plot if completed else None,
            error=error,
        )
        entry.progress = LiveProgress()
        await self._show(entry, finished)
        if completed:
            picture = await self._curves(finished)
            await self._post(finished, render.completion_text(finished, result), picture=picture)
        elif error is not None:  # failed
            await self._post(finished, render.failure_text(finished, error))

    async def _curves(self, job: FineTuneJob) -> Picture | None:
        """The job's training-curves PNG, if it wrote one that is still there."""
        if job.plot_path is None:
            return None
        try:
            data = await asyncio.to_thread(Path(job.plot_path).read_bytes)
        except OSError:
            return None
        return Picture(render.curves_filename(job), data)

    # -- reporting -------------------------------------------------------------------

    async def _post(
        self, job: FineTuneJob, text: str, *, picture: Picture | None = None
    ) -> int | None:
        if self._reporter is None:
            return None
        return await self._reporter.post(job.channel_id, text, picture=picture)

    async def _show(self, entry: _Entry, job: FineTuneJob) -> None:
        """Edit the job's status message to show ``job`` with the entry's live progress."""
        if self._reporter is None or entry.status_message_id is None:
            return
        text = render.format_job(job, live=entry.progress)
        await self._reporter.edit(job.channel_id, entry.status_message_id, text)

    async def _report_interrupted(self, jobs: Sequence[FineTuneJob]) -> None:
        assert self._reporter is not None
        await self._reporter.wait_until_ready()
        for job in jobs:
            if job.status_message_id is not None:
                await self._reporter.edit(
                    job.channel_id, job.status_message_id, render.format_job(job)
                )
            await self._post(job, render.interrupted_text(job))

    # -- cancelling ------------------------------------------------------------------

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
        await self._store.audit(
            guild_id=guild_id, user_id=user_id, action="finetune.cancel", detail=f"job {job_id}"
        )
        entry = self._entries.get(job_id)
        if job_id in self._queue or entry is None:
            with contextlib.suppress(ValueError):
                self._queue.remove(job_id)
            self._entries.pop(job_id, None)
            job = await self._repo.finish(job_id, JobStatus.CANCELLED)
            await asyncio.to_thread(self._files.discard_inputs, job_id)
            if entry is not None:
                entry.progress = LiveProgress()
                await self._show(entry, job)
            self._spawn(self._refresh_queued(), "finetune-queue-positions")
            return job
        entry.cancel_requested = True
        entry.progress.cancelling = True
        if entry.process is not None:
            self._spawn(entry.process.cancel(self.cancel_grace_s), f"finetune-cancel-{job_id}")
        await self._show(entry, job)
        return job

    # -- promotions ------------------------------------------------------------------

    async def promote(self, job_id: int, guild_id: int, user_id: int) -> GuildModel:
        """Serve a completed job's model for its task in this server, at once."""
        job = await self.job_in_guild(job_id, guild_id)
        return await self._promotions.promote(job, user_id)

    async def rollback(self, guild_id: int, task: Task, user_id: int) -> RollbackResult:
        """Serve the model promoted before the current one (or the default) for ``task``."""
        return await self._promotions.rollback(guild_id, task, user_id)

    # -- stored models ---------------------------------------------------------------

    async def stored_models(self, guild_id: int) -> int:
        return await self._repo.count_stored_models(guild_id)

    async def delete_model(self, job_id: int, guild_id: int, user_id: int) -> FineTuneJob:
        """Delete a completed job's model from disk (not one serving here, nor one a running
        job starts from); the job keeps its record and metrics."""
        job = await self.job_in_guild(job_id, guild_id)
        if job.status != JobStatus.COMPLETED:
            raise FineTuneError(f"Job #{job_id} is {job.status}; it has no model to delete.")
        folder = job.model_folder(self.models_dir)
        if folder is None:
            raise FineTuneError(f"Job #{job_id}'s model was already deleted.")
        task = SERVED_TASK[job.task]
        current = await self._repo.current_model(guild_id, task)
        if current is not None and current.job_id == job_id:
            raise FineTuneError(
                f"Job #{job_id}'s model serves **{task}** in this server; go back to the model "
                f"before it with `/finetune rollback task:{task}` first."
            )
        users = [
            j.id for j in await self._repo.active_for_guild(guild_id) if j.base_job_id == job_id
        ]
        if users:
            raise FineTuneError(
                f"Job #{users[0]} starts from job #{job_id}'s model; delete it once that job ends."
            )
        await asyncio.to_thread(self._files.delete_model, folder)
        deleted = await self._repo.forget_model(job_id)
        await self._store.audit(
            guild_id=guild_id, user_id=user_id, action="finetune.delete", detail=f"job {job_id}"
        )
        return deleted
