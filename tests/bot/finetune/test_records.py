"""JobRepository: jobs and promotions round-trip through SQLite with the stored strings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.finetune.records import FineTuneJob, JobRepository
from bot.store import Store
from models.specs import Task
from models.training.datasets import TrainTask
from models.training.spec import JobStatus


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "hfcord.db")
    yield store
    await store.close()


async def _create(repo: JobRepository, guild_id: int = 1) -> FineTuneJob:
    return await repo.create(
        guild_id=guild_id,
        channel_id=2,
        requested_by=3,
        task=TrainTask.TOKEN_CLASSIFICATION,
        base_model="bert-base-cased",
        data_source="conll.txt",
        params={"hyperparameters": {"epochs": 2.0}},
    )


async def test_repository_round_trip_and_finish_once(store: Store) -> None:
    repo = JobRepository(store)
    job = await _create(repo)
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
    done = await repo.finish(job.id, JobStatus.COMPLETED, metrics={"f1": 0.9}, output_dir="/m/1")
    assert done.status == "completed" and done.finished_at and done.metrics == {"f1": 0.9}
    # A late second outcome (e.g. a cancel racing the end) does not overwrite the first.
    again = await repo.finish(job.id, JobStatus.FAILED, error="late")
    assert again.status == "completed" and again.error is None
    assert [j.id for j in await repo.list_for_guild(1)] == [1]
    assert await repo.list_for_guild(2) == []


async def test_statuses_are_stored_as_the_same_strings(store: Store) -> None:
    """Rows written before JobStatus existed keep reading, and new rows look the same."""
    repo = JobRepository(store)
    job_id = (await _create(repo)).id
    await repo.mark_running(job_id)
    async with store.conn.execute("SELECT status FROM finetune_jobs") as cursor:
        assert [tuple(row) for row in await cursor.fetchall()] == [("running",)]
    async with store.transaction() as conn:
        await conn.execute("UPDATE finetune_jobs SET status = 'interrupted'")
    job = await repo.get(job_id)
    assert job is not None and job.status is JobStatus.INTERRUPTED and not job.active


async def test_mark_running_leaves_an_ended_job_ended(store: Store) -> None:
    repo = JobRepository(store)
    job_id = (await _create(repo)).id
    await repo.finish(job_id, JobStatus.CANCELLED)
    await repo.mark_running(job_id)
    job = await repo.get(job_id)
    assert job is not None and job.status == "cancelled" and job.started_at is None


async def test_interrupt_unfinished_marks_only_active_jobs(store: Store) -> None:
    repo = JobRepository(store)
    queued, running, done = [(await _create(repo)).id for _ in range(3)]
    await repo.mark_running(running)
    await repo.finish(done, JobStatus.COMPLETED)
    interrupted = await repo.interrupt_unfinished()
    assert [(j.id, j.status) for j in interrupted] == [
        (queued, "interrupted"),
        (running, "interrupted"),
    ]
    assert interrupted[1].error == (
        "The bot restarted while this job was running; start it again if needed."
    )
    finished = await repo.get(done)
    assert finished is not None and finished.status == "completed"


async def test_promotion_history_walks_back(store: Store) -> None:
    repo = JobRepository(store)
    a = await repo.promote(
        guild_id=1, task=Task.SENTIMENT, job_id=None, model_path="/a", promoted_by=9
    )
    b = await repo.promote(
        guild_id=1, task=Task.SENTIMENT, job_id=None, model_path="/b", promoted_by=9
    )
    await repo.promote(guild_id=2, task=Task.SENTIMENT, job_id=None, model_path="/x", promoted_by=9)
    assert b.previous_id == a.id and a.previous_id is None
    assert [(m.guild_id, m.model_path) for m in await repo.current_models()] == [
        (1, "/b"),
        (2, "/x"),
    ]
    await repo.roll_back(b.id, 9)
    current = await repo.current_model(1, Task.SENTIMENT)
    assert current is not None and current.model_path == "/a"
    assert current.task is Task.SENTIMENT
    c = await repo.promote(
        guild_id=1, task=Task.SENTIMENT, job_id=None, model_path="/c", promoted_by=9
    )
    assert c.previous_id == a.id
    assert [m.model_path for m in await repo.history(1, Task.SENTIMENT)] == ["/c", "/b", "/a"]
