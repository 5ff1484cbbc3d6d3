"""Fine-tuning for untrusted servers (issue 10): what a server may name, quotas, sizes, no
secrets for the worker, paths from any working directory, cleanup, death with the bot.

The manager runs the stand-in worker (`tests.support.finetune.FAKE_WORKER`), which writes what
it was given (base model, environment, working directory) into the model it saves.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.finetune import FineTuneError, FineTuneManager, JobRequest, Upload
from bot.settings import Settings
from bot.store import Store
from models.specs import Task
from models.training.datasets import TrainTask
from models.training.spec import Hyperparameters
from tests.support.finetune import (
    FINETUNE_HOST,
    FakeModelSwitch,
    Managers,
    RecordingReporter,
    wait_for_job,
    wait_for_worker,
    worker_pids,
    write_fake_python,
    write_safetensors,
)
from tests.support.waiting import wait_until

PROJECT_ROOT = Path(__file__).resolve().parents[3]
CSV = "text,label\n" + "".join(f"good thing {i},pos\nbad thing {i},neg\n" for i in range(10))
MakeSettings = Callable[..., Settings]


@pytest.fixture
def roots(tmp_path: Path) -> Path:
    """The operator's model root: a model "bert" (100 parameters) and links in and out."""
    root = tmp_path / "roots"
    write_safetensors(root / "bert", 100)
    (root / "link").symlink_to(root / "bert")
    (tmp_path / "data" / "models").mkdir(parents=True)
    (root / "escape").symlink_to(tmp_path / "data" / "models")
    return root


@pytest.fixture
def make_settings(tmp_path: Path, roots: Path) -> MakeSettings:
    def make(**values: Any) -> Settings:
        fields: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "model_roots": (roots,),
            "finetune_max_active_jobs": 10,
            "finetune_max_stored_models": 10,
        }
        fields.update(values)
        return Settings.load(env_file=None, **fields)

    return make


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    (tmp_path / "data").mkdir(exist_ok=True)
    store = await Store.open(tmp_path / "data" / "hfcord.sqlite3")
    yield store
    await store.close()


@pytest.fixture
async def managers(store: Store, tmp_path: Path) -> AsyncIterator[Managers]:
    made = Managers(store, write_fake_python(tmp_path))
    yield made
    await made.close()


def request(base: str = "fake-complete", *, guild: int = 1, **values: Any) -> JobRequest:
    fields: dict[str, Any] = {
        "guild_id": guild,
        "channel_id": 10 + guild,
        "requested_by": 7,
        "task": TrainTask.TEXT_CLASSIFICATION,
        "base_model": base,
        "train": Upload("moods.csv", CSV.encode()),
        "hyperparameters": Hyperparameters(max_steps=3),
    }
    fields.update(values)
    return JobRequest(**fields)


async def started(
    managers: Managers, settings: Settings, models: FakeModelSwitch | None = None
) -> FineTuneManager:
    manager = managers.make(settings)
    await manager.start(RecordingReporter(), models or FakeModelSwitch())
    return manager


async def completed(manager: FineTuneManager, job_request: JobRequest) -> int:
    submitted = await manager.submit(job_request)
    job = await wait_for_job(manager, submitted.job.id, {"completed", "failed"})
    assert job.status == "completed", job.error
    return job.id


# --------------------------------------------------------------------------- item 1


async def test_a_server_names_only_hub_models_its_own_jobs_and_the_operators_folders(
    managers: Managers, make_settings: MakeSettings, tmp_path: Path, roots: Path
) -> None:
    settings = make_settings()
    manager = await started(managers, settings)
    mine = await completed(manager, request(guild=1))
    mine_folder = settings.models_dir / str(mine)

    # Server 2 can't reach server 1's model: not by job, nor by path, nor through a link.
    refusals = {
        f"job:{mine}": f"There is no fine-tune job #{mine} in this server.",
        f"#{mine}": f"There is no fine-tune job #{mine} in this server.",
        str(mine_folder): "is not one this bot's operator has made available",
        str(roots / "escape" / str(mine)): "is not one this bot's operator has made available",
        str(roots / ".." / "data" / "models" / str(mine)): "is not one this bot's operator",
        "https://huggingface.co/gpt2": "Links and schemes are not accepted",
        "hf://gpt2": "Links and schemes are not accepted",
        "file:///etc": "Links and schemes are not accepted",
        "./data/models/1": "is not a model this bot can use",
        "../data": "is not a model this bot can use",
        "~/models": "is not an absolute path",
        "a/b/c": "is not a model this bot can use",
        str(roots / "missing"): "does not exist",
    }
    for ref, refusal in refusals.items():
        with pytest.raises(FineTuneError) as caught:
            await manager.submit(request(ref, guild=2))
        assert refusal in str(caught.value), ref
        assert str(roots) not in str(caught.value).replace(ref, "")  # no folder of the host
        assert str(settings.data_dir) not in str(caught.value).replace(ref, "")
    with pytest.raises(FineTuneError, match=f"no fine-tune job #{mine} in this server"):
        await manager.promote(mine, guild_id=2, user_id=7)
    assert [j.id for j in await manager.recent_jobs(2)] == []

    # What is checked is what is stored, and what the worker is given.
    through_link = await completed(manager, request(str(roots / "link"), guild=2))
    own = await completed(manager, request(f"job:{mine}", guild=1))
    hub = await completed(manager, request("fake-complete", guild=2))
    for job_id, location, label in (
        (through_link, str((roots / "bert").resolve()), "bert"),
        (own, str(mine_folder), f"job #{mine}"),
        (hub, "fake-complete", "fake-complete"),
    ):
        job = await manager.job(job_id)
        assert job is not None
        assert (job.base_model, job.base_label) == (location, label)
        assert (settings.models_dir / str(job_id) / "base.txt").read_text() == location
        shown = manager.describe(job)
        assert f"base {label}" in shown and str(tmp_path) not in shown


# --------------------------------------------------------------------------- item 2


async def test_a_relative_data_folder_works_from_any_working_directory(
    managers: Managers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: Store
) -> None:
    """The reported failure: HFCORD_DATA_DIR=./data and a job failing with "No such file or
    directory: 'data/jobs/7/job.json'" unless the bot ran from the checkout."""
    start = tmp_path / "start"
    start.mkdir()
    monkeypatch.chdir(start)
    settings = Settings.load(env_file=None, data_dir="./data")
    assert settings.data_dir == start.resolve() / "data"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    local_store = await Store.open(settings.database_path)
    try:
        models = FakeModelSwitch()
        made = Managers(local_store, managers.fake_python)
        manager = made.make(settings)
        await manager.start(RecordingReporter(), models)
        job_id = await completed(manager, request())
        promoted = await manager.promote(job_id, guild_id=1, user_id=7)
        assert promoted.model_path == str(start.resolve() / "data" / "models" / str(job_id))
        cwd, held = (settings.models_dir / str(job_id) / "cwd.txt").read_text().split("\n")
        assert held == "" and Path(cwd) != elsewhere and Path(cwd) != PROJECT_ROOT
        await made.close()

        monkeypatch.chdir("/")  # a restart from yet another folder serves the same model
        again = FakeModelSwitch()
        restarted = made.make(settings)
        await restarted.start(RecordingReporter(), again)
        assert again.overrides == {(1, Task.SENTIMENT): promoted.model_path}
        await made.close()
    finally:
        await local_store.close()


async def test_promotions_stored_with_relative_paths_keep_working(
    managers: Managers, make_settings: MakeSettings, store: Store
) -> None:
    """Rows written while the data folder was relative hold "data/models/<id>"."""
    settings = make_settings()
    manager = await started(managers, settings)
    job_id = await completed(manager, request())
    await store.conn.execute(
        "UPDATE finetune_jobs SET output_dir = ? WHERE id = ?", (f"data/models/{job_id}", job_id)
    )
    await store.conn.commit()
    models = FakeModelSwitch()
    restarted = managers.make(settings)
    await restarted.start(RecordingReporter(), models)
    model = await restarted.promote(job_id, guild_id=1, user_id=7)
    assert model.model_path == str(settings.models_dir / str(job_id))


# --------------------------------------------------------------------------- item 4


async def test_per_server_quotas_and_deleting_a_model(
    managers: Managers, make_settings: MakeSettings
) -> None:
    settings = make_settings(finetune_max_active_jobs=2, finetune_max_stored_models=2)
    models = FakeModelSwitch()
    manager = await started(managers, settings, models)
    await manager.submit(request("fake-hang"))
    await manager.submit(request("fake-hang"))
    with pytest.raises(FineTuneError, match="already has 2 fine-tuning job\\(s\\) queued or"):
        await manager.submit(request())
    other = await manager.submit(request(guild=2))  # another server has its own quota
    for job_id in (1, 2):
        await manager.cancel(job_id, guild_id=1, user_id=7)
        await wait_for_job(manager, job_id, {"cancelled"})

    await wait_for_job(manager, other.job.id, {"completed"})
    first = await completed(manager, request())
    second = await completed(manager, request())
    with pytest.raises(FineTuneError, match=r"keeps 2 fine-tuned model\(s\); it may keep 2"):
        await manager.submit(request())
    await manager.promote(first, guild_id=1, user_id=7)
    with pytest.raises(FineTuneError, match="serves \\*\\*sentiment\\*\\* in this server; go back"):
        await manager.delete_model(first, guild_id=1, user_id=7)
    with pytest.raises(FineTuneError, match=f"no fine-tune job #{second} in this server"):
        await manager.delete_model(second, guild_id=2, user_id=7)

    deleted = await manager.delete_model(second, guild_id=1, user_id=7)
    assert deleted.output_dir is None and deleted.model_deleted
    assert not (settings.models_dir / str(second)).exists()
    assert manager.describe(deleted).endswith("Its model was deleted.")
    assert await manager.stored_models(1) == 1
    with pytest.raises(FineTuneError, match="already deleted"):
        await manager.delete_model(second, guild_id=1, user_id=7)
    with pytest.raises(FineTuneError, match="was deleted"):
        await manager.promote(second, guild_id=1, user_id=7)
    with pytest.raises(FineTuneError, match="was deleted"):
        await manager.submit(request(f"job:{second}"))

    await manager.submit(request())  # room again


async def test_a_model_a_job_starts_from_stays_until_that_job_ends(
    managers: Managers, make_settings: MakeSettings
) -> None:
    manager = await started(managers, make_settings())
    base = await completed(manager, request())
    hang = await manager.submit(request("fake-hang"))
    await wait_for_worker(manager, hang.job.id)
    user = await manager.submit(request(f"job:{base}"))  # queued behind the hanging one
    with pytest.raises(FineTuneError, match=f"Job #{user.job.id} starts from job #{base}'s"):
        await manager.delete_model(base, guild_id=1, user_id=7)
    await manager.cancel(user.job.id, guild_id=1, user_id=7)
    await manager.delete_model(base, guild_id=1, user_id=7)


async def test_parameter_limits_at_start_and_at_promotion(
    managers: Managers, make_settings: MakeSettings, roots: Path
) -> None:
    settings = make_settings(finetune_max_parameters=50)
    manager = await started(managers, settings)
    with pytest.raises(FineTuneError, match=r"^bert has 100 parameters; this bot fine-tunes mod"):
        await manager.submit(request(str(roots / "bert")))
    assert await manager.recent_jobs(1) == []
    job_id = await completed(manager, request())  # a hub id offline: the worker counts
    with pytest.raises(
        FineTuneError, match="has 100 parameters; this bot serves fine-tuned models of up to 50"
    ):
        await manager.promote(job_id, guild_id=1, user_id=7)


# --------------------------------------------------------------------------- item 6


async def test_the_worker_gets_no_secrets_and_an_empty_working_directory(
    managers: Managers, make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DISCORD_TOKEN", "HFCORD_GENERATION_API_KEY", "HF_TOKEN", "OPENAI_API_KEY"):
        monkeypatch.setenv(name, "secret")
    settings = make_settings()
    manager = await started(managers, settings)
    job_id = await completed(manager, request())
    names = set(json.loads((settings.models_dir / str(job_id) / "env.json").read_text()))
    assert not names & {"DISCORD_TOKEN", "HFCORD_GENERATION_API_KEY", "HF_TOKEN", "OPENAI_API_KEY"}
    assert not any(name.startswith("HFCORD_") for name in names - {"HFCORD_PARENT_PID"})
    assert {"PATH", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_IMPLICIT_TOKEN"} <= names
    _, held = (settings.models_dir / str(job_id) / "cwd.txt").read_text().split("\n")
    assert held == ""


# --------------------------------------------------------------------------- item 7


async def test_job_inputs_go_when_jobs_end_and_leftovers_are_swept_at_start(
    managers: Managers, make_settings: MakeSettings
) -> None:
    settings = make_settings()
    models = FakeModelSwitch()
    manager = await started(managers, settings, models)
    kept = await completed(manager, request())
    await manager.promote(kept, guild_id=1, user_id=7)
    crashed = await manager.submit(request("fake-crash"))
    await wait_for_job(manager, crashed.job.id, {"failed"})
    running = await manager.submit(request("fake-hang"))
    queued = await manager.submit(request("fake-hang"))
    await wait_for_worker(manager, running.job.id)
    await manager.cancel(queued.job.id, guild_id=1, user_id=7)
    jobs_dir = settings.data_dir / "jobs"

    def gone(*job_ids: int) -> bool:
        return not any((jobs_dir / str(job_id)).exists() for job_id in job_ids)

    await wait_until(lambda: gone(kept, crashed.job.id, queued.job.id), what="inputs removed")
    assert (jobs_dir / str(running.job.id) / "train.data").exists()  # still in use

    await manager.close()  # the bot stops mid-job; an earlier run left leftovers too
    (jobs_dir / ".incoming-0123").mkdir()
    (settings.models_dir / f".{running.job.id}.partial-4242").mkdir()
    (settings.models_dir / "99").mkdir()  # no job keeps it
    (settings.models_dir / "notes").mkdir()  # not ours to judge
    restarted = FakeModelSwitch()
    after = managers.make(settings)
    await after.start(RecordingReporter(), restarted)
    assert list(jobs_dir.iterdir()) == []
    assert sorted(p.name for p in settings.models_dir.iterdir()) == [str(kept), "notes"]
    assert restarted.overrides == {(1, Task.SENTIMENT): str(settings.models_dir / str(kept))}


async def _kill_the_bot_and_check_its_worker(tmp_path: Path, python: str, *base: str) -> None:
    """Run FINETUNE_HOST (a bot process running one job), SIGKILL it once the job trains, and
    check its worker does not train on, orphaned."""
    data_dir = tmp_path / "host-data"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    host = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", FINETUNE_HOST, str(data_dir), python, *base),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    run_dir = data_dir.resolve() / "jobs" / "1"
    try:
        assert host.stdout is not None
        pid = int(await asyncio.wait_for(host.stdout.readline(), 300))
        assert worker_pids(run_dir) == [pid]
        host.kill()
        await host.wait()
        await wait_until(
            lambda: worker_pids(run_dir) == [], timeout=15, what="the worker to die with its bot"
        )
    finally:
        if host.returncode is None:
            host.kill()
            await host.wait()
        for pid in worker_pids(run_dir):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_a_worker_dies_with_the_bot_process_that_started_it(tmp_path: Path) -> None:
    await _kill_the_bot_and_check_its_worker(tmp_path, write_fake_python(tmp_path), "fake-hang")


@pytest.mark.slow  # the real training worker (imports torch)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_the_real_worker_dies_with_the_bot_process_that_started_it(
    tmp_path: Path, tiny_sentiment_dir: Path, tiny_models_root: Path
) -> None:
    await _kill_the_bot_and_check_its_worker(
        tmp_path, sys.executable, str(tiny_sentiment_dir), str(tiny_models_root)
    )
