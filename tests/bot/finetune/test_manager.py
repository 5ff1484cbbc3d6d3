"""FineTuneManager without Discord: the queue, cancel, a killed worker, restarts, promotions.

The manager runs a stand-in worker (`tests.support.finetune.FAKE_WORKER`, stdlib only, speaking
the worker's event protocol) so these tests take seconds; tests/e2e/test_finetune.py runs the
real one. Reports land in a `RecordingReporter`, model switches in a `FakeModelSwitch`.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.errors import UserFacingError
from bot.finetune import FineTuneError, FineTuneManager, HubData, JobRequest, Upload
from bot.settings import Settings
from bot.store import Store
from models.specs import Task
from models.training.datasets import TrainTask
from models.training.spec import Hyperparameters
from tests.support.finetune import (
    FakeModelSwitch,
    RecordingReporter,
    wait_for_job,
    wait_for_worker,
    worker_pids,
    write_fake_python,
)
from tests.support.waiting import wait_until

CSV = "text,label\n" + "".join(f"good thing {i},pos\nbad thing {i},neg\n" for i in range(10))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Quotas high enough for the queue tests; tests/bot/finetune/test_tenancy.py tests them.
    return Settings.load(
        env_file=None,
        data_dir=tmp_path / "data",
        finetune_max_concurrent=1,
        finetune_max_active_jobs=10,
        finetune_max_stored_models=10,
    )


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    store = await Store.open(settings.database_path)
    yield store
    await store.close()


Make = Callable[..., FineTuneManager]


@pytest.fixture
async def make_manager(settings: Settings, store: Store, tmp_path: Path) -> AsyncIterator[Make]:
    made: list[FineTuneManager] = []
    fake_python = write_fake_python(tmp_path)

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
        "hyperparameters": Hyperparameters(max_steps=3),
    }
    values.update(kw)
    return JobRequest(**values)


async def test_job_runs_reports_progress_and_posts_the_plot(
    make_manager: Make, settings: Settings
) -> None:
    reporter = RecordingReporter()
    manager = make_manager()
    await manager.start(reporter, None)
    submitted = await manager.submit(request())
    assert submitted.position == 0
    assert submitted.train.num_examples == 20 and submitted.train.labels == ("neg", "pos")
    job = await wait_for_job(manager, submitted.job.id, {"completed", "failed"})
    assert job.status == "completed", job.error
    assert job.output_dir == str(settings.models_dir / "1")
    assert job.metrics == {"accuracy": 0.75, "f1": 0.7}
    assert job.params["hyperparameters"]["max_steps"] == 3
    # Its inputs (the upload, job.json, the worker log) go once it ends (issue 10, item 6).
    await wait_until(lambda: not (settings.data_dir / "jobs" / "1").exists(), what="cleanup")
    await wait_until(lambda: len(reporter.messages(10)) == 2, what="the completion post")
    status, final = reporter.messages(10)
    assert status.id == job.status_message_id
    assert status.contents[0].startswith("⏳ **Fine-tune job #1**")
    assert any("step 2/3" in c and "loss 0.5000" in c and "ETA" in c for c in status.contents)
    assert "Completed: accuracy 0.7500, f1 0.7000" in status.content
    assert "accuracy: 0.7500" in final.content and final.picture is not None
    assert final.picture.filename == "finetune-1-curves.png"
    assert final.picture.data.startswith(b"\x89PNG")


async def test_one_job_at_a_time_others_queued_in_order(make_manager: Make) -> None:
    manager = make_manager()
    await manager.start(RecordingReporter(), None)
    first = await manager.submit(request("fake-hang"))
    second = await manager.submit(request("fake-complete"))
    third = await manager.submit(request("fake-complete"))
    assert (first.position, second.position, third.position) == (0, 1, 2)
    await wait_for_worker(manager, 1)
    assert (await manager.job(2)).status == "queued"  # type: ignore[union-attr]
    assert "Queued (1 job(s) ahead)." in manager.describe(second.job)
    await manager.cancel(1, guild_id=1, user_id=7)
    assert (await wait_for_job(manager, 1, {"cancelled"})).status == "cancelled"
    job2 = await wait_for_job(manager, 2, {"completed"})
    job3 = await wait_for_job(manager, 3, {"completed"})
    assert job2.started_at is not None and job3.started_at is not None
    assert job2.finished_at is not None and job2.finished_at <= job3.started_at


async def test_cancel_queued_and_running(
    make_manager: Make, settings: Settings, store: Store
) -> None:
    reporter = RecordingReporter()
    manager = make_manager()
    await manager.start(reporter, None)
    await manager.submit(request("fake-hang"))
    await manager.submit(request("fake-hang"))
    dropped = await manager.cancel(2, guild_id=1, user_id=7)
    assert dropped.status == "cancelled" and dropped.started_at is None
    await wait_for_worker(manager, 1)
    with pytest.raises(UserFacingError, match="no fine-tune job #1 in this server"):
        await manager.cancel(1, guild_id=99, user_id=7)
    asked = await manager.cancel(1, guild_id=1, user_id=7)
    assert asked.status == "running"  # stops between steps, shortly
    assert "cancelling…" in reporter.messages(10)[0].content
    job = await wait_for_job(manager, 1, {"cancelled", "failed"})
    assert job.status == "cancelled"
    assert worker_pids(manager.jobs_dir / "1") == [] and not (settings.models_dir / "1").exists()
    with pytest.raises(UserFacingError, match="already cancelled"):
        await manager.cancel(1, guild_id=1, user_id=7)
    audit = await store.recent_audit(1)
    assert [a.action for a in audit][:2] == ["finetune.cancel", "finetune.cancel"]


async def test_killed_or_crashed_worker_fails_the_job_and_the_queue_goes_on(
    make_manager: Make,
) -> None:
    reporter = RecordingReporter()
    manager = make_manager()
    await manager.start(reporter, None)
    await manager.submit(request("fake-hang"))
    await manager.submit(request("fake-crash"))
    await manager.submit(request("fake-complete"))
    os.kill(await wait_for_worker(manager, 1), signal.SIGKILL)
    killed = await wait_for_job(manager, 1, {"failed", "cancelled"})
    assert killed.status == "failed" and "killed (SIGKILL)" in (killed.error or "")
    crashed = await wait_for_job(manager, 2, {"failed"})
    assert "exited with code 5" in (crashed.error or "")
    assert (await wait_for_job(manager, 3, {"completed"})).status == "completed"
    posted = [m.content for m in reporter.messages(10)]
    assert any(c.startswith("❌ Fine-tune job #1 failed") for c in posted)


async def test_restart_marks_unfinished_jobs_interrupted_and_reports_them_once_ready(
    make_manager: Make,
) -> None:
    reporter = RecordingReporter()
    before = make_manager()
    await before.start(reporter, None)
    await before.submit(request("fake-hang"))
    await before.submit(request("fake-hang", channel=11))
    await wait_for_worker(before, 1)
    await before.close()  # the bot stops: workers killed, the rows still say running/queued
    assert [(await before.job(i)).status for i in (1, 2)] == ["running", "queued"]  # type: ignore[union-attr]

    reporter.ready.clear()  # the gateway of the restarted bot is not ready yet
    after = make_manager()
    await after.start(reporter, None)
    for job_id in (1, 2):
        job = await after.job(job_id)
        assert job is not None and job.status == "interrupted" and job.finished_at
    assert all(len(reporter.messages(channel)) == 1 for channel in (10, 11))  # nothing yet

    reporter.ready.set()

    def reported() -> bool:
        return all(len(reporter.messages(channel)) == 2 for channel in (10, 11))

    await wait_until(reported, what="the interrupted jobs' reports")
    for channel in (10, 11):
        messages = reporter.messages(channel)
        assert "interrupted by a bot restart" in messages[-1].content
        assert messages[0].content.startswith("⚠️ **Fine-tune job")  # old status edited


async def test_submit_refuses_bad_data_and_parameters_and_writes_nothing(
    make_manager: Make, settings: Settings
) -> None:
    manager = make_manager()
    await manager.start(RecordingReporter(), None)
    bad = request(train=Upload("moods.tsv", b"label\ttext\npos\tfine\n\tno label\n"))
    with pytest.raises(UserFacingError, match=r"moods\.tsv line 3"):
        await manager.submit(bad)
    with pytest.raises(UserFacingError, match="learning rate"):
        await manager.submit(request(hyperparameters=Hyperparameters(learning_rate=2.0)))
    with pytest.raises(UserFacingError, match="hub dataset"):
        await manager.submit(request(train=HubData("no-such-dataset-hfcord")))
    assert await manager.recent_jobs(1) == []
    jobs_dir = settings.data_dir / "jobs"
    assert not jobs_dir.exists() or list(jobs_dir.iterdir()) == []


async def test_submit_before_start_is_refused(make_manager: Make) -> None:
    with pytest.raises(FineTuneError, match="isn't running"):
        await make_manager().submit(request())


async def two_completed_jobs(make_manager: Make) -> tuple[FineTuneManager, FakeModelSwitch]:
    """A started manager whose jobs #1 and #2 completed, and its model switch."""
    models = FakeModelSwitch()
    manager = make_manager()
    await manager.start(RecordingReporter(), models)
    for _ in range(2):
        await manager.submit(request())
    await wait_for_job(manager, 2, {"completed"})
    return manager, models


async def test_promote_rollback_and_restore_on_start(
    make_manager: Make, settings: Settings
) -> None:
    manager, models = await two_completed_jobs(make_manager)
    with pytest.raises(UserFacingError, match="no fine-tune job #1 in this server"):
        await manager.promote(1, guild_id=5, user_id=7)
    first = await manager.promote(1, guild_id=1, user_id=7)
    assert first.task == "sentiment" and first.model_path == str(settings.models_dir / "1")
    assert models.calls[-1] == ("set", 1, "sentiment", first.model_path, True)
    assert models.display_names[(1, Task.SENTIMENT)] == "fine-tuned job #1"  # never its path
    with pytest.raises(UserFacingError, match="already serves"):
        await manager.promote(1, guild_id=1, user_id=7)
    await manager.promote(2, guild_id=1, user_id=7)

    # A restart serves the current promotion again, loaded lazily.
    models_after = FakeModelSwitch()
    restarted = make_manager()
    await restarted.start(RecordingReporter(), models_after)
    path2 = str(settings.models_dir / "2")
    assert models_after.calls == [("set", 1, "sentiment", path2, False)]
    assert models_after.display_names[(1, Task.SENTIMENT)] == "fine-tuned job #2"

    back = await restarted.rollback(1, Task.SENTIMENT, user_id=7)
    assert back.serving is not None and back.serving.job_id == 1
    assert models_after.overrides == {(1, "sentiment"): first.model_path}
    assert models_after.display_names[(1, Task.SENTIMENT)] == "fine-tuned job #1"
    default = await restarted.rollback(1, Task.SENTIMENT, user_id=7)
    assert default.serving is None and models_after.calls[-1] == ("clear", 1, "sentiment")
    with pytest.raises(UserFacingError, match="default model already serves"):
        await restarted.rollback(1, Task.SENTIMENT, user_id=7)


async def test_rollback_skips_a_model_that_no_longer_loads(
    make_manager: Make, settings: Settings
) -> None:
    manager, models = await two_completed_jobs(make_manager)
    await manager.promote(1, guild_id=1, user_id=7)
    await manager.promote(2, guild_id=1, user_id=7)
    models.broken.add(str(settings.models_dir / "1"))
    result = await manager.rollback(1, Task.SENTIMENT, user_id=7)
    assert result.serving is None and [m.job_id for m in result.skipped] == [1]
    assert (1, "sentiment") not in models.overrides


async def test_promote_refuses_unfinished_jobs(make_manager: Make) -> None:
    manager = make_manager()
    await manager.start(RecordingReporter(), FakeModelSwitch())
    await manager.submit(request("fake-hang"))
    await wait_for_worker(manager, 1)
    with pytest.raises(UserFacingError, match="only a completed job"):
        await manager.promote(1, guild_id=1, user_id=7)


async def test_promote_and_rollback_refused_without_models(make_manager: Make) -> None:
    manager = make_manager()
    await manager.start(RecordingReporter(), None)
    await manager.submit(request())
    await wait_for_job(manager, 1, {"completed"})
    with pytest.raises(FineTuneError, match="nothing can be promoted"):
        await manager.promote(1, guild_id=1, user_id=7)
    with pytest.raises(FineTuneError, match="nothing to roll back"):
        await manager.rollback(1, Task.SENTIMENT, user_id=7)


async def test_one_process_per_data_folder_runs_jobs(make_manager: Make) -> None:
    """A second bot process (or a playground) on the same data folder must not mark the first
    one's running jobs interrupted, nor start jobs of its own."""
    owner = make_manager()
    await owner.start(RecordingReporter(), FakeModelSwitch())
    submitted = await owner.submit(request("fake-hang"))
    await wait_for_worker(owner, submitted.job.id)

    other = make_manager()
    await other.start(RecordingReporter(), FakeModelSwitch())
    assert owner.owns_jobs and not other.owns_jobs
    job = await other.job(submitted.job.id)
    assert job is not None and job.status == "running"  # not marked interrupted
    with pytest.raises(FineTuneError, match="Another hfcord process"):
        await other.submit(request())
    with pytest.raises(FineTuneError, match="cancel it there"):
        await other.cancel(submitted.job.id, 1, 7)

    await owner.close()  # releases the folder: the next manager takes over and reports
    successor = make_manager()
    await successor.start(RecordingReporter(), FakeModelSwitch())
    assert successor.owns_jobs
    job = await successor.job(submitted.job.id)
    assert job is not None and job.status == "interrupted"
