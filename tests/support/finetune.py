"""Fine-tuning test helpers: a stand-in worker, a recording reporter, a fake model switch,
and waiting on jobs and their worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import struct
import sys
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.finetune import FineTuneJob, FineTuneManager
from bot.finetune.interfaces import Picture
from bot.settings import Settings
from bot.store import Store
from models.specs import Task
from tests.support.waiting import wait_until

# A stand-in for models.training.worker speaking its event protocol, so manager tests take
# seconds. Like the real worker it first binds itself to its parent (models.training.sandbox),
# and it runs in the empty working directory with the environment the bot gives workers.
# Behaviour is picked by the base model name: "fake-complete" (and any other model, e.g. a
# job's folder) trains 3 steps and saves a model (a copy of a local base model, so it loads;
# else one of 100 parameters that doesn't), also writing the
# environment variable names it got (env.json), its working directory and what that held
# (cwd.txt) and the base model it was given (base.txt) into it;
# "fake-hang" reports step 1, then waits for a cancel (SIGTERM, exit 3) or a kill;
# "fake-crash" exits 5 without a final event.
FAKE_WORKER = r"""
import json, os, shutil, signal, struct, sys
# A cancel is taken by sigwait: blocked first, so the parent watch thread blocks it too.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
from models.training.sandbox import bind_to_parent
bind_to_parent()
spec = json.load(open(sys.argv[-1]))
def emit(**event):
    print(json.dumps(event), flush=True)
mode = spec["base_model"] if spec["base_model"].startswith("fake-") else "fake-complete"
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
if os.path.isdir(spec["base_model"]):  # "trained" from a local model: a copy of it (it loads)
    shutil.copytree(spec["base_model"], out)
else:
    os.makedirs(out)
    open(os.path.join(out, "config.json"), "w").write("{}")
    header = json.dumps({"w": {"dtype": "F32", "shape": [10, 10], "data_offsets": [0, 400]}})
    with open(os.path.join(out, "model.safetensors"), "wb") as weights:
        weights.write(struct.pack("<Q", len(header)) + header.encode() + bytes(400))
open(os.path.join(out, "training_curves.png"), "wb").write(b"\x89PNG\r\n\x1a\nfake")
json.dump(sorted(os.environ), open(os.path.join(out, "env.json"), "w"))
open(os.path.join(out, "base.txt"), "w").write(spec["base_model"])
open(os.path.join(out, "cwd.txt"), "w").write(os.getcwd() + "\n" + ",".join(os.listdir(".")))
emit(event="final", status="completed", metrics={"accuracy": 0.75, "f1": 0.7}, output_dir=out,
     plot=os.path.join(out, "training_curves.png"), primary_metric="accuracy", wall_s=0.2)
"""
FAKE_MODEL_PARAMETERS = 100  # what a fake worker's saved model holds


def write_safetensors(folder: Path, parameters: int) -> Path:
    """A model folder whose weights hold ``parameters`` values (zeros), for size checks."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    header = json.dumps(
        {"w": {"dtype": "F32", "shape": [parameters], "data_offsets": [0, 4 * parameters]}}
    ).encode()
    data = struct.pack("<Q", len(header)) + header + bytes(4 * parameters)
    (folder / "model.safetensors").write_bytes(data)
    return folder


# A bot process for the parent-death tests: runs a FineTuneManager on DATA_DIR whose workers
# run with PYTHON (the stand-in, or the real interpreter), starts a long job from BASE (a model
# folder under ROOT, or "fake-hang"), prints its worker's pid once it trains, then waits to be
# killed. Run as `python -c FINETUNE_HOST DATA_DIR PYTHON BASE [ROOT]`, the project on
# PYTHONPATH.
FINETUNE_HOST = r"""
import asyncio, sys
from pathlib import Path
from bot.finetune import FineTuneManager, JobRequest, Upload
from bot.settings import Settings
from bot.store import Store
from models.training.datasets import TrainTask
from models.training.spec import Hyperparameters
from tests.support.finetune import RecordingReporter, wait_for_worker

async def main(data_dir, python, base, roots):
    settings = Settings.load(env_file=None, data_dir=data_dir, model_roots=roots, torch_threads=1)
    store = await Store.open(settings.database_path)
    manager = FineTuneManager(
        settings, store, python=python, status_interval_s=0.0, progress_interval_s=0.2
    )
    await manager.start(RecordingReporter(), None)
    csv = "text,label\n" + "".join(f"good day {i},pos\nbad day {i},neg\n" for i in range(16))
    submitted = await manager.submit(JobRequest(
        guild_id=1, channel_id=2, requested_by=3, task=TrainTask.TEXT_CLASSIFICATION,
        base_model=base, train=Upload("moods.csv", csv.encode()),
        hyperparameters=Hyperparameters(epochs=100, batch_size=4, max_length=16),
    ))
    pid = await wait_for_worker(manager, submitted.job.id, timeout=240)
    print(pid, flush=True)
    await asyncio.sleep(3600)

roots = tuple(Path(p) for p in sys.argv[4:])
asyncio.run(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], roots))
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
        self.display_names: dict[tuple[int, Task], str | None] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.broken: set[str] = set()

    async def set_guild_override(
        self,
        guild_id: int,
        task: Task,
        spec: str,
        *,
        preload: bool = True,
        display_name: str | None = None,
    ) -> None:
        self.calls.append(("set", guild_id, task, spec, preload))
        self.display_names[(guild_id, task)] = display_name
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


class Managers:
    """Makes `FineTuneManager`s running the stand-in worker (fast status updates); `close`
    closes every one made."""

    def __init__(self, store: Store, fake_python: str) -> None:
        self.store = store
        self.fake_python = fake_python
        self.made: list[FineTuneManager] = []

    def make(self, settings: Settings, **kwargs: Any) -> FineTuneManager:
        options: dict[str, Any] = {
            "python": self.fake_python,
            "status_interval_s": 0.0,
            "cancel_grace_s": 5.0,
        }
        options.update(kwargs)
        manager = FineTuneManager(settings, self.store, **options)
        self.made.append(manager)
        return manager

    async def close(self) -> None:
        for manager in self.made:
            await manager.close()
