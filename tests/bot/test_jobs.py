"""JobRepository and FineTuneManager: the queue, cancel, a killed worker, restarts, promotions.

The manager runs a stand-in worker (a stdlib-only Python script speaking the worker's event
protocol) so these tests take seconds; tests/e2e/test_finetune.py runs the real one.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Collection
from pathlib import Path
from typing import Any

import pytest

from bot.errors import UserFacingError
from bot.jobs import (
    FineTuneError,
    FineTuneJob,
    FineTuneManager,
    HubData,
    JobRepository,
    JobRequest,
    Upload,
    format_job,
)
from bot.settings import Settings
from bot.store import Store
from models.training.datasets import TrainTask

CSV = "text,label\n" + "".join(f"good thing {i},pos\nbad thing {i},neg\n" for i in range(10))

# Behaviour is picked by the base model name: "fake-complete", "fake-hang", "fake-crash".
FAKE_WORKER = r"""
import json, os, signal, sys, time
spec = json.load(open(sys.argv[-1]))
def emit(**event):
    print(json.dumps(event), flush=True)
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
mode = spec["base_model"]
emit(event="phase", phase="loading_data")
with open(spec["train"]["path"]) as data:
    rows = data.read().count("\n") - 1
emit(event="dataset", train_examples=rows, eval_examples=2, labels=["neg", "pos"])
emit(event="phase", phase="training", max_steps=3)
if mode == "fake-crash":
    sys.exit(5)
for step in range(1, 10_000):
    if stop or os.path.exists(spec["cancel_file"]):
        emit(event="final", status="cancelled", metrics={}, output_dir=None)
        sys.exit(3)
    emit(event="progress", step=step, max_steps=3, epoch=step / 3, loss=1.0 / step, eta_s=3 - step)
    if mode == "fake-complete" and step == 3:
        break
    time.sleep(0.05)
emit(event="eval", step=3, epoch=1.0, metrics={"accuracy": 0.75, "f1": 0.7, "loss": 0.5})
out = spec["output_dir"]
os.makedirs(out)
open(os.path.join(out, "config.json"), "w").write("{}")
open(os.path.join(out, "training_curves.png"), "wb").write(b"\x89PNG\r\n\x1a\nfake")
emit(event="final", status="completed", metrics={"accuracy": 0.75, "f1": 0.7}, output_dir=out,
     plot=os.path.join(out, "training_curves.png"), primary_metric="accuracy", wall_s=0.2)
"""


class FakeMessage:
    def __init__(self, channel: FakeChannel, message_id: int, content: str, file: Any) -> None:
        self.channel = channel
        self.id = message_id
        self.contents = [content]
        self.file = file

    @property
    def content(self) -> str:
        return self.contents[-1]

    async def edit(self, *, content: str, **_: Any) -> FakeMessage:
        self.contents.append(content)
        return self


class FakeChannel:
    def __init__(self, channel_id: int) -> None:
        self.id = channel_id
        self.messages: list[FakeMessage] = []

    async def send(self, content: str | None = None, **kwargs: Any) -> FakeMessage:
        assert kwargs["allowed_mentions"].everyone is False
        message = FakeMessage(self, 1000 + len(self.messages), content or "", kwargs.get("file"))
        self.messages.append(message)
        return message

    def get_partial_message(self, message_id: int) -> FakeMessage:
        return next(m for m in self.messages if m.id == message_id)


class FakeRegistry:
    def __init__(self) -> None:
        self.overrides: dict[tuple[int, str], str] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.broken: set[str] = set()

    async def set_guild_override(
        self, guild_id: int, task: str, spec: str, *, preload: bool = True
    ) -> None:
        self.calls.append(("set", guild_id, task, spec, preload))
        if spec in self.broken:
            raise ValueError(f"{spec} does not load")
        self.overrides[(guild_id, task)] = spec

    async def clear_guild_override(self, guild_id: int, task: str) -> None:
        self.calls.append(("clear", guild_id, task))
        self.overrides.pop((guild_id, task), None)


class FakeBot:
    """What the manager uses of HFCordBot: channels by id, the registry, readiness."""

    def __init__(self, registry: FakeRegistry | None = None) -> None:
        self.registry = registry
        self.channels: dict[int, FakeChannel] = {}

    def get_channel(self, channel_id: int) -> FakeChannel:
        return self.channels.setdefault(channel_id, FakeChannel(channel_id))

    def get_partial_messageable(self, channel_id: int) -> FakeChannel:
        return self.get_channel(channel_id)

    async def wait_until_ready(self) -> None:
        return None


@pytest.fixture
def fake_python(tmp_path: Path) -> str:
    worker = tmp_path / "fake_worker.py"
    worker.write_text(FAKE_WORKER)
    launcher = tmp_path / "python"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{worker}" "$@"\n')
    launcher.chmod(0o755)
    return str(launcher)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load(env_file=None, data_dir=tmp_path / "data", finetune_max_concurrent=1)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    store = await Store.open(settings.database_path)
    yield store
    await store.close()


Make = Callable[..., FineTuneManager]


@pytest.fixture
async def make_manager(settings: Settings, store: Store, fake_python: str) -> AsyncIterator[Make]:
    made: list[FineTuneManager] = []

    def make(**kwargs: Any) -> FineTuneManager:
        options: dict[str, Any] = {
            "python": fake_python,
            "status_interval_s": 0.0,
            "cancel_grace_s": 5.0,
        }
        options.update(kwargs)
        manager = FineTuneManager(settings, store, **options)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        await manager.close()


def request(
    base: str = "fake-complete", *, guild: int = 1, channel: int = 10, **kw: Any
) -> JobRequest:
    values: dict[str, Any] = {
        "guild_id": guild,
        "channel_id": channel,
        "requested_by": 7,
        "task": TrainTask.TEXT_CLASSIFICATION,
        "base_model": base,
        "train": Upload("moods.csv", CSV.encode()),
        "max_steps": 3,
    }
    values.update(kw)
    return JobRequest(**values)


async def wait_status(
    manager: FineTuneManager, job_id: int, statuses: Collection[str], timeout: float = 30
) -> FineTuneJob:
    async with asyncio.timeout(timeout):
        while True:
            job = await manager.repo.get(job_id)
            if job is not None and job.status in statuses:
                return job
            await asyncio.sleep(0.02)


async def wait_running_process(manager: FineTuneManager, job_id: int) -> int:
    async with asyncio.timeout(30):
        while True:
            process = manager.process_of(job_id)
            job = await manager.repo.get(job_id)
            if process is not None and job is not None and job.step:
                return process.pid
            await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- repository


async def test_repository_round_trip_and_finish_once(store: Store) -> None:
    repo = JobRepository(store)
    job = await repo.create(
        guild_id=1,
        channel_id=2,
        requested_by=3,
        task=TrainTask.TOKEN_CLASSIFICATION,
        base_model="bert-base-cased",
        data_source="conll.txt",
        params={"hyperparameters": {"epochs": 2.0}},
    )
    assert (job.id, job.status, job.task) == (1, "queued", TrainTask.TOKEN_CLASSIFICATION)
    assert job.params == {"hyperparameters": {"epochs": 2.0}} and job.metrics == {}
    await repo.mark_running(job.id)
    await repo.update_progress(
        job.id,
        phase="training",
        step=5,
        max_steps=10,
        epoch=0.5,
        loss=0.7,
        eta_s=3.0,
        metrics={"f1": 0.4},
    )
    running = await repo.get(job.id)
    assert running is not None and running.status == "running" and running.started_at
    assert (running.step, running.max_steps, running.metrics) == (5, 10, {"f1": 0.4})
    done = await repo.finish(job.id, "completed", metrics={"f1": 0.9}, output_dir="/m/1")
    assert done.status == "completed" and done.finished_at and done.metrics == {"f1": 0.9}
    # A late second outcome (e.g. a cancel racing the end) does not overwrite the first.
    again = await repo.finish(job.id, "failed", error="late")
    assert again.status == "completed" and again.error is None
    assert [j.id for j in await repo.list_for_guild(1)] == [1]
    assert await repo.list_for_guild(2) == []


async def test_promotion_history_walks_back(store: Store) -> None:
    repo = JobRepository(store)
    a = await repo.promote(
        guild_id=1, task="sentiment", job_id=None, model_path="/a", promoted_by=9
    )
    b = await repo.promote(
        guild_id=1, task="sentiment", job_id=None, model_path="/b", promoted_by=9
    )
    await repo.promote(guild_id=2, task="sentiment", job_id=None, model_path="/x", promoted_by=9)
    assert b.previous_id == a.id and a.previous_id is None
    assert [(m.guild_id, m.model_path) for m in await repo.current_models()] == [
        (1, "/b"),
        (2, "/x"),
    ]
    await repo.roll_back(b.id, 9)
    current = await repo.current_model(1, "sentiment")
    assert current is not None and current.model_path == "/a"
    c = await repo.promote(
        guild_id=1, task="sentiment", job_id=None, model_path="/c", promoted_by=9
    )
    assert c.previous_id == a.id
    assert [m.model_path for m in await repo.history(1, "sentiment")] == ["/c", "/b", "/a"]


# --------------------------------------------------------------------------- manager


async def test_job_runs_reports_progress_and_posts_the_plot(
    make_manager: Make, settings: Settings
) -> None:
    bot = FakeBot()
    manager = make_manager()
    await manager.start(bot)  # type: ignore[arg-type]
    submitted = await manager.submit(request())
    assert submitted.position == 0
    assert submitted.train.num_examples == 20 and submitted.train.labels == ("neg", "pos")
    job = await wait_status(manager, submitted.job.id, {"completed", "failed"})
    assert job.status == "completed", job.error
    assert job.output_dir == str(settings.models_dir / "1")
    assert job.metrics == {"accuracy": 0.75, "f1": 0.7}
    assert json.loads((settings.data_dir / "jobs" / "1" / "job.json").read_text())["max_steps"] == 3
    await asyncio.sleep(0.05)
    status, final = bot.channels[10].messages
    assert status.id == job.status_message_id
    assert status.contents[0].startswith("⏳ **Fine-tune job #1**")
    assert any("step 2/3" in c and "loss 0.5000" in c and "ETA" in c for c in status.contents)
    assert "Completed: accuracy 0.7500, f1 0.7000" in status.content
    assert "accuracy: 0.7500" in final.content and final.file is not None
    assert final.file.filename == "finetune-1-curves.png"


async def test_one_job_at_a_time_others_queued_in_order(make_manager: Make) -> None:
    bot = FakeBot()
    manager = make_manager()
    await manager.start(bot)  # type: ignore[arg-type]
    first = await manager.submit(request("fake-hang"))
    second = await manager.submit(request("fake-complete"))
    third = await manager.submit(request("fake-complete"))
    assert (first.position, second.position, third.position) == (0, 1, 2)
    await wait_running_process(manager, 1)
    assert (await manager.repo.get(2)).status == "queued"  # type: ignore[union-attr]
    await manager.cancel(1, guild_id=1, user_id=7)
    assert (await wait_status(manager, 1, {"cancelled"})).status == "cancelled"
    job2 = await wait_status(manager, 2, {"completed"})
    job3 = await wait_status(manager, 3, {"completed"})
    assert job2.started_at is not None and job3.started_at is not None
    assert job2.finished_at is not None and job2.finished_at <= job3.started_at


async def test_cancel_queued_and_running(make_manager: Make, settings: Settings) -> None:
    bot = FakeBot()
    manager = make_manager()
    await manager.start(bot)  # type: ignore[arg-type]
    await manager.submit(request("fake-hang"))
    await manager.submit(request("fake-hang"))
    dropped = await manager.cancel(2, guild_id=1, user_id=7)
    assert dropped.status == "cancelled" and dropped.started_at is None
    await wait_running_process(manager, 1)
    with pytest.raises(UserFacingError, match="no fine-tune job #1 in this server"):
        await manager.cancel(1, guild_id=99, user_id=7)
    asked = await manager.cancel(1, guild_id=1, user_id=7)
    assert asked.status == "running"  # stops between steps, shortly
    job = await wait_status(manager, 1, {"cancelled", "failed"})
    assert job.status == "cancelled"
    assert manager.process_of(1) is None and not (settings.models_dir / "1").exists()
    with pytest.raises(UserFacingError, match="already cancelled"):
        await manager.cancel(1, guild_id=1, user_id=7)
    audit = await manager.store.recent_audit(1)
    assert [a.action for a in audit][:2] == ["finetune.cancel", "finetune.cancel"]


async def test_killed_or_crashed_worker_fails_the_job_and_the_queue_goes_on(
    make_manager: Make,
) -> None:
    bot = FakeBot()
    manager = make_manager()
    await manager.start(bot)  # type: ignore[arg-type]
    await manager.submit(request("fake-hang"))
    await manager.submit(request("fake-crash"))
    await manager.submit(request("fake-complete"))
    os.kill(await wait_running_process(manager, 1), signal.SIGKILL)
    killed = await wait_status(manager, 1, {"failed", "cancelled"})
    assert killed.status == "failed" and "killed (SIGKILL)" in (killed.error or "")
    crashed = await wait_status(manager, 2, {"failed"})
    assert "exited with code 5" in (crashed.error or "")
    assert (await wait_status(manager, 3, {"completed"})).status == "completed"
    posted = [m.content for m in bot.channels[10].messages]
    assert any(c.startswith("❌ Fine-tune job #1 failed") for c in posted)


async def test_restart_marks_unfinished_jobs_interrupted_and_reports_them(
    make_manager: Make,
) -> None:
    bot = FakeBot()
    before = make_manager()
    await before.start(bot)  # type: ignore[arg-type]
    await before.submit(request("fake-hang"))
    await before.submit(request("fake-hang", channel=11))
    await wait_running_process(before, 1)
    await before.close()  # the bot stops: workers killed, the rows still say running/queued
    assert [(await before.repo.get(i)).status for i in (1, 2)] == ["running", "queued"]  # type: ignore[union-attr]

    after = make_manager()
    await after.start(bot)  # type: ignore[arg-type]
    for job_id in (1, 2):
        job = await after.repo.get(job_id)
        assert job is not None and job.status == "interrupted" and job.finished_at
    await asyncio.sleep(0.1)  # the report waits for the gateway to be ready
    for channel in (10, 11):
        messages = bot.channels[channel].messages
        assert "interrupted by a bot restart" in messages[-1].content
        assert messages[0].content.startswith("⚠️ **Fine-tune job")  # old status edited


async def test_submit_refuses_bad_data_and_parameters_and_writes_nothing(
    make_manager: Make, settings: Settings
) -> None:
    manager = make_manager()
    await manager.start(FakeBot())  # type: ignore[arg-type]
    bad = request(train=Upload("moods.tsv", b"label\ttext\npos\tfine\n\tno label\n"))
    with pytest.raises(UserFacingError, match=r"moods\.tsv line 3"):
        await manager.submit(bad)
    with pytest.raises(UserFacingError, match="learning rate"):
        await manager.submit(request(learning_rate=2.0))
    with pytest.raises(UserFacingError, match="hub dataset"):
        await manager.submit(request(train=HubData("no-such-dataset-hfcord")))
    assert await manager.repo.list_for_guild(1) == []
    jobs_dir = settings.data_dir / "jobs"
    assert not jobs_dir.exists() or list(jobs_dir.iterdir()) == []


async def test_promote_rollback_and_restore_on_start(
    make_manager: Make, settings: Settings
) -> None:
    registry = FakeRegistry()
    bot = FakeBot(registry)
    manager = make_manager()
    await manager.start(bot)  # type: ignore[arg-type]
    for _ in range(2):
        await manager.submit(request())
    await wait_status(manager, 2, {"completed"})
    with pytest.raises(UserFacingError, match="no fine-tune job #1 in this server"):
        await manager.promote(1, guild_id=5, user_id=7)
    first = await manager.promote(1, guild_id=1, user_id=7)
    assert first.task == "sentiment" and first.model_path == str(settings.models_dir / "1")
    assert registry.calls[-1] == ("set", 1, "sentiment", first.model_path, True)
    with pytest.raises(UserFacingError, match="already serves"):
        await manager.promote(1, guild_id=1, user_id=7)
    await manager.promote(2, guild_id=1, user_id=7)

    # A restart serves the current promotion again, loaded lazily.
    registry_after = FakeRegistry()
    restarted = make_manager()
    await restarted.start(FakeBot(registry_after))  # type: ignore[arg-type]
    path2 = str(settings.models_dir / "2")
    assert registry_after.calls == [("set", 1, "sentiment", path2, False)]

    back = await restarted.rollback(1, "sentiment", user_id=7)
    assert back.serving is not None and back.serving.job_id == 1
    assert registry_after.overrides == {(1, "sentiment"): first.model_path}
    default = await restarted.rollback(1, "sentiment", user_id=7)
    assert default.serving is None and registry_after.calls[-1] == ("clear", 1, "sentiment")
    with pytest.raises(UserFacingError, match="default model already serves"):
        await restarted.rollback(1, "sentiment", user_id=7)


async def test_rollback_skips_a_model_that_no_longer_loads(
    make_manager: Make, settings: Settings
) -> None:
    registry = FakeRegistry()
    manager = make_manager()
    await manager.start(FakeBot(registry))  # type: ignore[arg-type]
    for _ in range(2):
        await manager.submit(request())
    await wait_status(manager, 2, {"completed"})
    await manager.promote(1, guild_id=1, user_id=7)
    await manager.promote(2, guild_id=1, user_id=7)
    registry.broken.add(str(settings.models_dir / "1"))
    result = await manager.rollback(1, "sentiment", user_id=7)
    assert result.serving is None and [m.job_id for m in result.skipped] == [1]
    assert (1, "sentiment") not in registry.overrides


async def test_promote_refuses_unfinished_jobs(make_manager: Make) -> None:
    manager = make_manager()
    await manager.start(FakeBot(FakeRegistry()))  # type: ignore[arg-type]
    await manager.submit(request("fake-hang"))
    await wait_running_process(manager, 1)
    with pytest.raises(UserFacingError, match="only a completed job"):
        await manager.promote(1, guild_id=1, user_id=7)


def test_format_job_hides_local_paths() -> None:
    job = FineTuneJob(
        id=3, guild_id=1, channel_id=2, status_message_id=None, requested_by=4,
        task=TrainTask.CAUSAL_LM, base_model="/srv/models/tiny-gpt2", data_source="poems.txt",
        params={}, status="failed", phase=None, step=None, max_steps=None, epoch=None, loss=None,
        eta_s=None, metrics={}, output_dir=None, plot_path=None, error="Out of memory.",
        created_at="2025-01-01T00:00:00Z", started_at=None, finished_at=None,
    )  # fmt: skip
    text = format_job(job)
    assert "`tiny-gpt2`" in text and "/srv" not in text and "Failed: Out of memory." in text


async def test_one_process_per_data_folder_runs_jobs(make_manager: Make) -> None:
    """A second bot process (or a playground) on the same data folder must not mark the first
    one's running jobs interrupted, nor start jobs of its own."""
    owner = make_manager()
    await owner.start(FakeBot(FakeRegistry()))  # type: ignore[arg-type]
    submitted = await owner.submit(request("fake-hang"))
    await wait_running_process(owner, submitted.job.id)

    other = make_manager()
    await other.start(FakeBot(FakeRegistry()))  # type: ignore[arg-type]
    assert owner.owns_jobs and not other.owns_jobs
    job = await other.repo.get(submitted.job.id)
    assert job is not None and job.status == "running"  # not marked interrupted
    with pytest.raises(FineTuneError, match="Another hfcord process"):
        await other.submit(request())
    with pytest.raises(FineTuneError, match="cancel it there"):
        await other.cancel(submitted.job.id, 1, 7)

    await owner.close()  # releases the folder: the next manager takes over and reports
    successor = make_manager()
    await successor.start(FakeBot(FakeRegistry()))  # type: ignore[arg-type]
    assert successor.owns_jobs
    job = await successor.repo.get(submitted.job.id)
    assert job is not None and job.status == "interrupted"
