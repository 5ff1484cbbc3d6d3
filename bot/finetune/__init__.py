"""Fine-tuning from Discord: jobs, their queue and training processes, and promotions.

- ``records``: jobs and promotions as stored (`FineTuneJob`, `GuildModel`, `JobRepository`).
- ``requests``: what `/finetune start` asks for (`JobRequest`, `Upload`, `HubData`), its
  validation (in an isolated process, `bot.isolation`) and the staging of its files.
- ``base_models``: what a server may name as a base model (a hub id, its own job, a folder
  under the operator's model roots), resolved to what the worker loads, and its size checked.
- ``files``: a job's inputs and models on disk; removing what ended, sweeping what was left.
- ``progress``: a running job's live progress (`LiveProgress`), folded from worker events.
- ``manager``: `FineTuneManager`, the service the app starts and closes and the cog calls.
- ``promotions``: which fine-tuned model serves a task in a server, and rolling it back.
- ``interfaces``: what the manager reports through (`JobReporter`) and switches models
  through (`ModelSwitch`).
- ``reporter``: `DiscordJobReporter`, the reporter over bot/reply.py.
- ``render``: every text fine-tuning shows in Discord.

A job's status is `models.training.spec.JobStatus`; hyper-parameters and their defaults are
`models.training.spec.Hyperparameters`.
"""

from __future__ import annotations

from bot.finetune.manager import FineTuneManager
from bot.finetune.records import SERVED_TASK, FineTuneJob, GuildModel, RollbackResult
from bot.finetune.requests import FineTuneError, HubData, JobRequest, SubmittedJob, Upload

__all__ = [
    "SERVED_TASK",
    "FineTuneError",
    "FineTuneJob",
    "FineTuneManager",
    "GuildModel",
    "HubData",
    "JobRequest",
    "RollbackResult",
    "SubmittedJob",
    "Upload",
]
