"""Promotions: a completed job's model serves its task in one server, until rolled back.

Every promotion is a row (`guild_models`); the newest one not rolled back serves. A rollback
walks back through that history to the previous model that still loads, or to the default.
Models switch through a `ModelSwitch` (the registry); promotions survive restarts through
:meth:`Promotions.restore`.

Only a server's own completed job can be promoted there (the caller finds the job in that
server), so the folder handed to the registry is always that job's own, absolute, under the data
folder's ``models/``; a model over ``max_parameters`` is refused before it loads.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from bot.finetune.interfaces import ModelSwitch
from bot.finetune.records import SERVED_TASK, FineTuneJob, GuildModel, JobRepository, RollbackResult
from bot.finetune.requests import FineTuneError
from bot.store import Store
from models.specs import Task
from models.training.sizes import folder_parameters, format_parameters
from models.training.spec import JobStatus

log = logging.getLogger(__name__)


class Promotions:
    """Switches the model serving a task in a server, and records who did and why."""

    def __init__(
        self, repo: JobRepository, store: Store, *, models_dir: Path, max_parameters: int
    ) -> None:
        self._repo = repo
        self._store = store
        self._models_dir = models_dir
        self._max_parameters = max_parameters
        self.models: ModelSwitch | None = None  # None: the bot serves no models

    def _folder(self, model: GuildModel) -> str:
        """A promotion's model folder, absolute (rows written while the data folder was given
        as a relative path hold relative paths: those mean ``models/<job id>``)."""
        path = Path(model.model_path)
        if path.is_absolute() or model.job_id is None:
            return model.model_path
        return str(self._models_dir / str(model.job_id))

    def _switch(self, refusal: str) -> ModelSwitch:
        if self.models is None:
            raise FineTuneError(refusal)
        return self.models

    async def restore(self) -> int:
        """Serve every stored promotion again (loaded on first use); returns how many."""
        if self.models is None:
            return 0
        restored = 0
        for model in await self._repo.current_models():
            try:
                await self.models.set_guild_override(
                    model.guild_id,
                    model.task,
                    self._folder(model),
                    preload=False,
                    display_name=served_name(model.job_id),
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

    async def promote(self, job: FineTuneJob, user_id: int) -> GuildModel:
        """Serve a completed job's model for its task in the job's server, at once."""
        models = self._switch("Models are switched off on this bot; nothing can be promoted.")
        if job.status != JobStatus.COMPLETED:
            raise FineTuneError(
                f"Job #{job.id} is {job.status}; only a completed job's model can be promoted."
            )
        folder = job.model_folder(self._models_dir)
        if folder is None:
            raise FineTuneError(f"The model of job #{job.id} was deleted.")
        if not await asyncio.to_thread(folder.is_dir):
            raise FineTuneError(f"The model of job #{job.id} is no longer on disk.")
        task = SERVED_TASK[job.task]
        current = await self._repo.current_model(job.guild_id, task)
        if current is not None and current.job_id == job.id:
            raise FineTuneError(f"Job #{job.id}'s model already serves {task} in this server.")
        count = await asyncio.to_thread(folder_parameters, folder)
        if count is None:
            raise FineTuneError(f"The model of job #{job.id} has no weights left; it can't serve.")
        if count > self._max_parameters:
            raise FineTuneError(
                f"Job #{job.id}'s model has {format_parameters(count)} parameters; this bot "
                f"serves fine-tuned models of up to {format_parameters(self._max_parameters)}."
            )
        # Loads first: if it can't load, the old model keeps serving and nothing is recorded.
        await models.set_guild_override(
            job.guild_id, task, str(folder), preload=True, display_name=served_name(job.id)
        )
        model = await self._repo.promote(
            guild_id=job.guild_id,
            task=task,
            job_id=job.id,
            model_path=str(folder),
            promoted_by=user_id,
        )
        await self._store.audit(
            guild_id=job.guild_id,
            user_id=user_id,
            action="finetune.promote",
            detail=f"job {job.id} now serves {task}",
        )
        return model

    async def rollback(self, guild_id: int, task: Task, user_id: int) -> RollbackResult:
        """Serve the model promoted before the current one (or the default) for ``task``."""
        models = self._switch("Models are switched off on this bot; nothing to roll back.")
        current = await self._repo.current_model(guild_id, task)
        if current is None:
            raise FineTuneError(
                f"No fine-tuned model is promoted for {task} in this server; "
                "the default model already serves it."
            )
        await self._repo.roll_back(current.id, user_id)
        skipped: list[GuildModel] = []
        while True:
            serving = await self._repo.current_model(guild_id, task)
            if serving is None:
                await models.clear_guild_override(guild_id, task)
                break
            try:
                await models.set_guild_override(
                    guild_id,
                    task,
                    self._folder(serving),
                    preload=True,
                    display_name=served_name(serving.job_id),
                )
                break
            except Exception:
                # Its folder was deleted or no longer loads: fall back further.
                log.warning("rollback: %s no longer loads", serving.model_path, exc_info=True)
                await self._repo.roll_back(serving.id, user_id)
                skipped.append(serving)
        await self._store.audit(
            guild_id=guild_id,
            user_id=user_id,
            action="finetune.rollback",
            detail=f"{task}: job {current.job_id} removed; now "
            + (f"job {serving.job_id}" if serving is not None else "the default model"),
        )
        return RollbackResult(current, serving, tuple(skipped))


def served_name(job_id: int | None) -> str | None:
    """How a promoted model is named to users (in /models, footers and errors)."""
    return f"fine-tuned job #{job_id}" if job_id is not None else None
