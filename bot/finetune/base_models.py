"""The base model a server names in `/finetune start`, resolved to exactly what the worker loads.

A server may name a hub model id (``owner/name``), a model it trained itself (``job:12``,
``#12``), or a folder under the operator's ``HFCORD_MODEL_ROOTS`` by its absolute path. Never
another server's model, nothing else in the data folder, and no URL or other scheme. The
resolved location (a hub id, or an absolute folder) is what the job stores and the worker loads;
its label is what Discord shows (no host path). Its size is checked here too, before a job
exists: a local folder by its safetensors headers, a hub model by the hub's metadata.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

from bot.finetune.records import JobRepository
from bot.finetune.requests import FineTuneError
from models.errors import InvalidModelRef
from models.refs import has_scheme, is_hub_id, resolve_confined_folder
from models.training.sizes import folder_parameters, format_parameters, hub_model_parameters
from models.training.spec import JobStatus

# "job:12", "job 12", "job #12", "#12".
_JOB_REF_RE = re.compile(r"^(?:job\s*[:#]?\s*|#)(\d{1,12})$", re.IGNORECASE)

WHAT_TO_NAME = (
    "a hub model id (like `distilbert-base-uncased` or `owner/name`), a job of this server "
    "(`job:12`), or a folder the bot's operator made available, by its full path"
)


@dataclass(frozen=True)
class BaseModel:
    """A base model as a job stores it."""

    location: str  # a hub id, or an absolute folder: exactly what the worker loads
    label: str  # as Discord shows it: the hub id, the folder's name, "job #12"
    job_id: int | None = None  # the server's own job it comes from

    @property
    def is_local(self) -> bool:
        return Path(self.location).is_absolute()


def parse_job_ref(ref: str) -> int | None:
    """The job number in ``job:12`` / ``#12``, or None."""
    found = _JOB_REF_RE.match(ref.strip())
    return int(found[1]) if found else None


async def resolve_base_model(
    ref: str,
    guild_id: int,
    jobs: JobRepository,
    *,
    models_dir: Path,
    model_roots: tuple[Path, ...],
    data_dir: Path,
) -> BaseModel:
    """What ``ref``, named in server ``guild_id``, may mean; else a `FineTuneError` saying why."""
    ref = ref.strip()
    if not ref:
        raise FineTuneError(f"Give a base model: {WHAT_TO_NAME}.")
    job_id = parse_job_ref(ref)
    if job_id is not None:
        return await _own_job_model(job_id, guild_id, jobs, models_dir)
    if has_scheme(ref) or "://" in ref:
        raise FineTuneError(
            f"Links and schemes are not accepted as a base model; give {WHAT_TO_NAME}."
        )
    if ref.startswith(("/", "~")):
        if not model_roots:
            raise FineTuneError(
                "This bot offers no local model folders; name a hub model (`owner/name`) or a "
                "job of this server (`job:12`)."
            )
        try:
            folder = await asyncio.to_thread(
                resolve_confined_folder, ref, model_roots, excluded=(data_dir,)
            )
        except InvalidModelRef as exc:
            raise FineTuneError(str(exc)) from None
        return BaseModel(str(folder), folder.name)
    if is_hub_id(ref):
        # Always the hub: the worker runs in an empty folder, so no local folder of that name
        # can stand in for it.
        return BaseModel(ref, ref)
    raise FineTuneError(f"{ref!r} is not a model this bot can use; give {WHAT_TO_NAME}.")


async def _own_job_model(
    job_id: int, guild_id: int, jobs: JobRepository, models_dir: Path
) -> BaseModel:
    job = await jobs.get(job_id)
    if job is None or job.guild_id != guild_id:  # another server's job is "no such job" too
        raise FineTuneError(f"There is no fine-tune job #{job_id} in this server.")
    if job.status != JobStatus.COMPLETED:
        raise FineTuneError(f"Job #{job_id} is {job.status}; only a completed job has a model.")
    folder = job.model_folder(models_dir)
    if folder is None or not await asyncio.to_thread(folder.is_dir):
        raise FineTuneError(f"The model of job #{job_id} was deleted; it can't be used any more.")
    return BaseModel(str(folder), f"job #{job_id}", job_id)


async def check_parameters(model: BaseModel, max_parameters: int) -> None:
    """Refuse a model over ``max_parameters`` when its size can be told without loading it
    (otherwise the worker counts before loading any weights)."""
    if model.is_local:
        count = await asyncio.to_thread(folder_parameters, Path(model.location))
    else:
        count = await asyncio.to_thread(hub_model_parameters, model.location)
    if count is not None and count > max_parameters:
        raise FineTuneError(
            f"{model.label} has {format_parameters(count)} parameters; this bot fine-tunes "
            f"models of up to {format_parameters(max_parameters)}."
        )
