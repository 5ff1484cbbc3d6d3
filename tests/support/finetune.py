"""Fine-tuning test helpers: a stand-in worker, a recording reporter, a fake model switch,
and waiting on jobs and their worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sys
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.finetune import FineTuneJob, FineTuneManager
from bot.finetune.interfaces import Picture
from models.specs import Task
from tests.support.waiting import wait_until

# A stdlib-only stand-in for models.training.worker speaking its event protocol, so manager
# tests take seconds. Behaviour is picked by the base model name:
# "fake-complete" trains 3 steps and saves a model; "fake-hang" reports step 1, then waits
# for a cancel (SIGTERM, exit 3) or a kill; "fake-crash" exits 5 without a final event.
FAKE_WORKER = r"""
import json, os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # a cancel is taken by sigwait
spec = json.load(open(sys.argv[-1]))
def emit(**event):
    print(json.dumps(event), flush=True)
mode = spec["base_model"]
emit(event="phase", phase="loading_data")
with open(spec["train"]["path"]) as data:
    rows = data.read().count("\n") - 1
emit(event="dataset", train_examples=rows, eval_examples=2, labels=["neg", "pos"])
emit(event="phase", phase="training", max_steps=3)
if mode == "fake-crash":
    sys.exit(5)
for step in range(1, 4 if mode == "fake-complete" else 2):
    emit(event="progress", step=step, max_steps=3, epoch=step / 3, loss=1.0 / step, eta_s=3 - step)
if mode == "fake-hang":
    signal.sigwait({signal.SIGTERM})
    emit(event="final", status="cancelled", metrics={}, output_dir=None)
    sys.exit(3)
emit(event="eval", step=3, epoch=1.0, metrics={"accuracy": 0.75, "f1": 0.7, "loss": 0.5})
out = spec["output_dir"]
os.makedirs(out)
open(os.path.join(out, "config.json"), "w").write("{}")
open(os.path.join(out, "training_curves.png"), "wb").write(b"\x89PNG\r\n\x1a\nfake")
emit(event="final", status="completed", metrics={"accuracy": 0.75, "f1": 0.7}, output_dir=out,
     plot=os.path.join(out, "training_curves.png"), primary_metric="accuracy", wall_s=0.2)
"""


def write_fake_python(folder: Path) -> str:
    """An executable to pass as the manager's ``python``: it runs FAKE_WORKER instead."""
    worker = folder / "fake_worker.py"
    worker.write_text(FAKE_WORKER)
    launcher = folder / "python"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{worker}" "$@"\n')
    launcher.chmod(0o755)
    return str(launcher)


@dataclass
class PostedMessage:
    """A message a `RecordingReporter` was asked to post, with every text it has had."""

    channel_id: int
    id: int
    contents: list[str]
    picture: Picture | None = None

    @property
    def content(self) -> str:
        return self.contents[-1]


@dataclass
class RecordingReporter:
    """A `JobReporter` that keeps what it was asked to post and edit, per channel.

    ``ready`` starts set; clear it to stand for a gateway that is not ready yet.
    """

    channels: dict[int, list[PostedMessage]] = field(default_factory=lambda: defaultdict(list))
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    def __post_init__(self) -> None:
        self.ready.set()

    def messages(self, channel_id: int) -> list[PostedMessage]:
        return self.channels[channel_id]

    async def wait_until_ready(self) -> None:
        await self.ready.wait()

    async def post(self, channel_id: int, text: str, *, picture: Picture | None = None) -> int:
        message = PostedMessage(channel_id, next(self._ids), [text], picture)
        self.channels[channel_id].append(message)
        return message.id

    async def edit(self, channel_id: int, message_id: int, text: str) -> None:
        (message,) = [m for m in self.channels[channel_id] if m.id == message_id]
        message.contents.append(text)


class FakeModelSwitch:
    """A `ModelSwitch` that records its calls; models whose path is in ``broken`` don't load."""

    def __init__(self) -> None:
        self.overrides: dict[tuple[int, Task], str] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.broken: set[str] = set()

    async def set_guild_override(
        self, guild_id: int, task: Task, spec: str, *, preload: bool = True
    ) -> None:
        self.calls.append(("set", guild_id, task, spec, preload))
        if spec in self.broken:
            raise ValueError(f"{spec} does not load")
        self.overrides[(guild_id, task)] = spec

    async def clear_guild_override(self, guild_id: int, task: Task) -> None:
        self.calls.append(("clear", guild_id, task))
        self.overrides.pop((guild_id, task), None)


async def wait_for_job(
    manager: FineTuneManager,
    job_id: int,
    statuses: Collection[str],
    *,
    timeout: float = 30.0,
    interval: float = 0.02,
) -> FineTuneJob:
    """The job once its stored status is one of ``statuses``."""
    found: FineTuneJob | None = None

    async def reached() -> bool:
        nonlocal found
        found = await manager.job(job_id)
        return found is not None and found.status in statuses

    what = f"job #{job_id} to be {' or '.join(statuses)}"
    await wait_until(reached, timeout=timeout, interval=interval, what=what)
    assert found is not None
    return found


def worker_pids(run_dir: Path) -> list[int]:
    """Live processes running the training worker on ``run_dir``'s job.json, found as an
    operator would (by command line; Linux /proc). A process that has ended is not listed."""
    spec = str(run_dir / "job.json").encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # it ended while we looked
            continue
        if spec in args:
            pids.append(int(entry.name))
    return pids


def worker_pid(run_dir: Path) -> int | None:
    """The worker process itself: it leads its own process group (anything it forked doesn't)."""
    leaders = []
    for pid in worker_pids(run_dir):
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(pid) == pid:
                leaders.append(pid)
    assert len(leaders) <= 1, f"more than one worker runs {run_dir}: {leaders}"
    return leaders[0] if leaders else None


async def wait_for_worker(
    manager: FineTuneManager, job_id: int, *, timeout: float = 30.0, interval: float = 0.02
) -> int:
    """The pid of a job's worker once it runs and its first progress is stored."""
    run_dir = manager.jobs_dir / str(job_id)

    async def training() -> bool:
        job = await manager.job(job_id)
        return bool(job is not None and job.step and worker_pid(run_dir) is not None)

    await wait_until(training, timeout=timeout, interval=interval, what=f"job #{job_id} to train")
    pid = worker_pid(run_dir)
    assert pid is not None
    return pid
