"""A job's files on disk, and removing them: inputs in ``jobs/<id>/`` (uploads, the worker's
spec, log, scratch and working folder), models in ``models/<id>/``.

An ended job's inputs go at once (`JobFiles.discard_inputs`); what a process that died left
(inputs of jobs now interrupted, half-written ``.<id>.partial-<pid>`` models, model folders no
completed job keeps) is swept when the next process starts (`JobFiles.sweep`). Blocking: call
these off the event loop.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Collection
from pathlib import Path

log = logging.getLogger(__name__)


class JobFiles:
    """The job and model folders of one data folder."""

    def __init__(self, jobs_dir: Path, models_dir: Path) -> None:
        self.jobs_dir = jobs_dir
        self.models_dir = models_dir

    def discard_inputs(self, job_id: int) -> None:
        """Remove an ended job's inputs and any partial output it left."""
        remove(self.jobs_dir / str(job_id))
        if self.models_dir.is_dir():
            for partial in self.models_dir.glob(f".{job_id}.partial-*"):
                remove(partial)

    def sweep(self, kept_models: Collection[int]) -> None:
        """Remove what earlier processes left, when no job runs: every job's inputs, partial
        outputs, and the model folders (``models/<job id>``) of jobs not in ``kept_models``.
        Anything else in ``models/`` is the operator's and stays."""
        if self.jobs_dir.is_dir():
            for entry in self.jobs_dir.iterdir():
                remove(entry)
        if self.models_dir.is_dir():
            for entry in self.models_dir.iterdir():
                orphan = entry.name.isdigit() and int(entry.name) not in kept_models
                if ".partial-" in entry.name or orphan:
                    log.info("removing %s, left by an earlier run", entry)
                    remove(entry)

    def delete_model(self, folder: Path) -> None:
        """Remove a job's model folder; only ever one directly in ``models/``."""
        if folder.resolve().parent != self.models_dir.resolve():
            log.warning("not deleting %s: it is not in %s", folder, self.models_dir)
            return
        remove(folder)


def remove(path: Path) -> None:
    """Remove a file or folder (and what it holds); a link is removed, never followed."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc)
