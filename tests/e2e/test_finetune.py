"""/finetune end to end: the real bot, real training processes on a tiny model, the emulator.

Each test that trains starts one worker process (importing torch takes ~10-20 s on CI), on a
few dozen rows and a handful of steps.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Collection
from pathlib import Path

import pytest

from bot.client import HFCordBot
from bot.finetune import FineTuneJob, FineTuneManager
from bot.settings import Settings
from bot.sim import CommandNotVisible, DiscordEmulator, SimMessage
from tests.support.e2e import BotRunner
from tests.support.finetune import wait_for_job, worker_pid, worker_pids, write_fake_python
from tests.support.waiting import wait_until

JOB_TIMEOUT_S = 240  # worker start-up plus a few steps on a loaded 2-core CI machine

GOOD_CSV = "text,label\n" + "".join(
    f"{text} {i},{label}\n"
    for i in range(16)
    for text, label in (("what a lovely sunny day", "happy"), ("this is awful and sad", "sad"))
)
BAD_CSV = "text,label\nI love it,happy\nI hate it,sad\nno label here,\nfine,happy\n"


def manager_of(bot: HFCordBot) -> FineTuneManager:
    assert isinstance(bot.jobs, FineTuneManager)
    return bot.jobs


def fast_updates(bot: HFCordBot) -> FineTuneManager:
    """Status edits and worker progress often enough for a test of a few seconds to see them."""
    manager = manager_of(bot)
    manager.status_interval_s = 0.2
    manager.progress_interval_s = 0.2
    manager.cancel_grace_s = 20.0
    return manager


async def wait_job(
    bot: HFCordBot, job_id: int, statuses: Collection[str], timeout: float = JOB_TIMEOUT_S
) -> FineTuneJob:
    return await wait_for_job(manager_of(bot), job_id, statuses, timeout=timeout, interval=0.1)


async def wait_for(predicate: Callable[[], bool], timeout: float = JOB_TIMEOUT_S) -> None:
    await wait_until(predicate, timeout=timeout, interval=0.1)


def status_message(emu: DiscordEmulator, job_id: int) -> SimMessage:
    (message,) = [
        m
        for m in emu.bot_messages
        if m.interaction_id is None and m.contents[0].startswith(f"⏳ **Fine-tune job #{job_id}**")
    ]
    return message


def start_options(
    emu: DiscordEmulator, base: Path | str, data: str, **extra: object
) -> dict[str, object]:
    options: dict[str, object] = {
        "task": "text-classification",
        "base_model": str(base),
        "file": emu.attachment("moods.csv", data),
        "batch_size": 8,
        "max_length": 32,
    }
    options.update(extra)
    return options


async def sentiment_labels(emu: DiscordEmulator, channel: object) -> str:
    inter = await emu.slash("sentiment", {"text": "what a lovely day"}, channel=channel)  # type: ignore[arg-type]
    await inter.final(timeout=60)
    return inter.text


async def test_non_admin_is_refused(
    emu: DiscordEmulator, hfcord: HFCordBot, tiny_sentiment_dir: Path
) -> None:
    with pytest.raises(CommandNotVisible):  # hidden by default permissions...
        await emu.slash("finetune list", user=emu.member)
    for command, options in (  # ...and refused by the bot's own check when an override shows it
        ("finetune start", start_options(emu, tiny_sentiment_dir, GOOD_CSV)),
        ("finetune list", {}),
        ("finetune status", {}),
        ("finetune cancel", {"job": 1}),
        ("finetune promote", {"job": 1}),
        ("finetune rollback", {"task": "sentiment"}),
    ):
        inter = await emu.slash(command, options, user=emu.member, bypass_permissions=True)
        await inter.final()
        assert inter.ephemeral and "Only server administrators" in inter.text, command
    assert await manager_of(hfcord).recent_jobs(emu.guild.id) == []


async def test_malformed_upload_is_refused_with_its_line(
    emu: DiscordEmulator, hfcord: HFCordBot, tiny_sentiment_dir: Path, settings: Settings
) -> None:
    inter = await emu.slash(
        "finetune start", start_options(emu, tiny_sentiment_dir, BAD_CSV), user=emu.admin
    )
    await inter.final()
    assert inter.ephemeral
    assert "moods.csv line 4" in inter.text and "no label" in inter.text
    assert await manager_of(hfcord).recent_jobs(emu.guild.id) == []
    jobs_dir = settings.data_dir / "jobs"
    assert not jobs_dir.exists() or list(jobs_dir.iterdir()) == []  # nothing half-written


@pytest.mark.slow  # a real training process
async def test_upload_trains_with_progress_and_png_then_promote_serves_only_this_server(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    settings: Settings,
    tiny_sentiment_dir: Path,
) -> None:
    async with run_bot(settings) as bot:
        fast_updates(bot)
        inter = await emu.slash(
            "finetune start",
            start_options(emu, tiny_sentiment_dir, GOOD_CSV, max_steps=6, epochs=1),
            user=emu.admin,
        )
        await inter.final()
        assert inter.ephemeral, inter.describe()
        # Validation's answer: counts, the label set and a sample row.
        assert "32 examples" in inter.text and "happy (16)" in inter.text
        assert "sad (16)" in inter.text and "e.g." in inter.text

        job = await wait_job(bot, 1, {"completed", "failed"})
        assert job.status == "completed", job.error
        await wait_for(lambda: any(m.attachments for m in emu.bot_messages))

        status = status_message(emu, 1)
        assert status.channel is emu.channel
        assert any("step " in c and "ETA" in c for c in status.contents), status.contents
        assert len(status.revisions) >= 4  # queued, running phases, progress, final
        assert "Completed" in status.content and "accuracy" in status.content
        (final,) = [m for m in emu.bot_messages if m.attachments]
        assert final.channel is emu.channel
        assert "accuracy" in final.content and "/finetune promote job:1" in final.content
        assert final.attachments[0].is_png
        assert job.output_dir == str(settings.models_dir / "1")
        assert (settings.models_dir / "1" / "config.json").is_file()

        # Before promotion this server uses the default model (SST-2 labels).
        before = await sentiment_labels(emu, emu.channel)
        assert "POSITIVE" in before or "NEGATIVE" in before, before
        promote = await emu.slash("finetune promote", {"job": 1}, user=emu.admin)
        await promote.final(timeout=60)
        assert "now serves **sentiment** in this server" in promote.text

        here = await sentiment_labels(emu, emu.channel)
        assert "happy" in here or "sad" in here, here
        there = await sentiment_labels(emu, emu.other_channel)
        assert "POSITIVE" in there or "NEGATIVE" in there, there
        assert "happy" not in there and "sad" not in there
        listed = await emu.slash("models")
        await listed.final()
        assert "fine-tuned job #1" in listed.text and str(settings.data_dir) not in listed.text

    # A restart serves the promoted model again in that server only.
    async with run_bot(settings) as bot:
        here = await sentiment_labels(emu, emu.channel)
        assert "happy" in here or "sad" in here, here
        rollback = await emu.slash("finetune rollback", {"task": "sentiment"}, user=emu.admin)
        await rollback.final(timeout=60)
        assert "default model serves it again" in rollback.text
        back = await sentiment_labels(emu, emu.channel)
        assert "POSITIVE" in back or "NEGATIVE" in back, back
        actions = [entry.action for entry in await bot.store.recent_audit(emu.guild.id)]
        assert actions[:3] == ["finetune.rollback", "finetune.promote", "finetune.start"]


@pytest.mark.slow  # a real training process
async def test_cancel_stops_a_running_job_and_drops_a_queued_one(
    emu: DiscordEmulator, hfcord: HFCordBot, tiny_sentiment_dir: Path, settings: Settings
) -> None:
    manager = fast_updates(hfcord)
    long_run = {"epochs": 100.0}
    first = await emu.slash(
        "finetune start",
        start_options(emu, tiny_sentiment_dir, GOOD_CSV, **long_run),
        user=emu.admin,
    )
    await first.final()
    second = await emu.slash(
        "finetune start",
        start_options(emu, tiny_sentiment_dir, GOOD_CSV, **long_run),
        user=emu.admin,
    )
    await second.final()
    assert "queued (1 job(s) ahead" in second.text  # one job at a time by default

    drop = await emu.slash("finetune cancel", {"job": 2}, user=emu.admin)
    await drop.final()
    assert "before it started" in drop.text
    assert (await wait_job(hfcord, 2, {"cancelled"}, timeout=5)).status == "cancelled"

    await wait_for(lambda: any("step " in c for c in status_message(emu, 1).contents))
    cancel = await emu.slash("finetune cancel", {"job": 1}, user=emu.admin)
    await cancel.final()
    assert "Cancelling job #1" in cancel.text
    job = await wait_job(hfcord, 1, {"cancelled", "failed", "completed"}, timeout=60)
    assert job.status == "cancelled"
    await wait_for(lambda: "Cancelled" in status_message(emu, 1).content, timeout=10)
    assert not (settings.models_dir / "1").exists()
    assert worker_pids(manager.jobs_dir / "1") == []  # the training process is gone

    listed = await emu.slash("finetune list", user=emu.admin)
    await listed.final()
    assert "**#2** · cancelled" in listed.text and "**#1** · cancelled" in listed.text


@pytest.mark.slow  # a real training process
async def test_training_process_killed_from_outside_fails_the_job_bot_keeps_answering(
    emu: DiscordEmulator, hfcord: HFCordBot, tiny_sentiment_dir: Path
) -> None:
    manager = fast_updates(hfcord)
    start = await emu.slash(
        "finetune start",
        start_options(emu, tiny_sentiment_dir, GOOD_CSV, epochs=100.0),
        user=emu.admin,
    )
    await start.final()
    await wait_for(lambda: any("step " in c for c in status_message(emu, 1).contents))
    pid = worker_pid(manager.jobs_dir / "1")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # e.g. the out-of-memory killer

    job = await wait_job(hfcord, 1, {"failed", "cancelled", "completed"}, timeout=60)
    assert job.status == "failed"
    assert job.error is not None and "killed (SIGKILL)" in job.error
    await wait_for(lambda: "Failed" in status_message(emu, 1).content, timeout=10)
    assert any("❌ Fine-tune job #1 failed" in m.content for m in emu.bot_messages)

    text = await sentiment_labels(emu, emu.channel)  # the bot is still answering
    assert "confident" in text
    status = await emu.slash("finetune status", {"job": 1}, user=emu.admin)
    await status.final()
    assert "killed (SIGKILL)" in status.text


# --------------------------------------------------------------------------- issue 10
# Safe to invite anywhere: every server admin is untrusted as far as the host and the other
# servers are concerned. Tests that need finished jobs run the stand-in worker
# (tests.support.finetune.FAKE_WORKER): the refusals and texts are the bot's, not the worker's.


def fake_training(bot: HFCordBot, tmp_path: Path) -> FineTuneManager:
    """The bot's jobs run the stand-in worker: a job completes in about a second."""
    manager = fast_updates(bot)
    manager.python = write_fake_python(tmp_path)
    return manager


async def answer(
    emu: DiscordEmulator, command: str, options: dict[str, object], **kw: object
) -> str:
    """The bot's answer to an admin's command (errors come privately)."""
    inter = await emu.slash(command, options, user=emu.admin, **kw)  # type: ignore[arg-type]
    await inter.final(timeout=120)
    return inter.text


async def test_a_dataset_is_a_hub_id_and_nothing_else(
    emu: DiscordEmulator,
    hfcord: HFCordBot,
    tiny_sentiment_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Item 1: no host folder, URL or scheme, and no local folder standing in for a hub id."""
    host = tmp_path / "host"
    (host / "moods").mkdir(parents=True)
    (host / "moods" / "train.csv").write_text("secret_column,label\nsecret host row,a\n" * 4)
    monkeypatch.chdir(host)  # the bot runs where a folder is named like a hub dataset
    base = str(tiny_sentiment_dir)
    for dataset, refusal in (
        (str(host / "moods"), "paths and links are not accepted"),
        ("/etc", "paths and links are not accepted"),
        ("hf://datasets/owner/name", "paths and links are not accepted"),
        ("https://huggingface.co/datasets/imdb", "paths and links are not accepted"),
        ("./moods", "paths and links are not accepted"),
        ("csv", "is a file format, not a hub dataset"),
        ("moods", "Couldn't load the hub dataset moods [train]"),  # the hub, never ./moods
    ):
        options: dict[str, object] = {"task": "text-classification", "base_model": base}
        text = await answer(emu, "finetune start", {**options, "dataset": dataset})
        assert refusal in text, (dataset, text)
        assert "secret" not in text and "Columns" not in text, text
    assert await manager_of(hfcord).recent_jobs(emu.guild.id) == []


async def test_another_servers_models_and_the_hosts_folders_are_out_of_reach(
    emu: DiscordEmulator,
    hfcord: HFCordBot,
    tiny_sentiment_dir: Path,
    tiny_models_root: Path,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """Item 1 and 6: server B can't train from, promote, delete or look at server A's model;
    nothing of the host shows in what either server reads."""
    fake_training(hfcord, tmp_path)
    start = await emu.slash(
        "finetune start", start_options(emu, tiny_sentiment_dir, GOOD_CSV), user=emu.admin
    )
    await start.final()
    assert (await wait_job(hfcord, 1, {"completed", "failed"})).status == "completed"
    folder = settings.models_dir / "1"
    assert folder.is_dir()

    there = {"channel": emu.other_channel}
    texts = [
        await answer(emu, "finetune start", {**start_options(emu, "job:1", GOOD_CSV)}, **there),
        await answer(emu, "finetune start", start_options(emu, "#1", GOOD_CSV), **there),
        await answer(emu, "finetune promote", {"job": 1}, **there),
        await answer(emu, "finetune status", {"job": 1}, **there),
        await answer(emu, "finetune delete", {"job": 1}, **there),
    ]
    assert all("There is no fine-tune job #1 in this server." in t for t in texts), texts
    by_path = await answer(emu, "finetune start", start_options(emu, folder, GOOD_CSV), **there)
    assert "is not one this bot's operator has made available" in by_path
    outside = await answer(emu, "finetune start", start_options(emu, tmp_path, GOOD_CSV), **there)
    assert "is not one this bot's operator has made available" in outside
    listed = await answer(emu, "finetune list", {}, **there)
    assert "No fine-tuning jobs in this server yet" in listed

    # Server A sees names, not folders: the model root's folder name, its job as "job #1".
    mine = await emu.slash("finetune start", start_options(emu, "job:1", GOOD_CSV), user=emu.admin)
    await mine.final()
    await wait_job(hfcord, 2, {"completed"})
    listed_here = await answer(emu, "finetune list", {})
    assert "tiny-sentiment · moods.csv" in listed_here and "job #1 · moods.csv" in listed_here
    seen = [listed_here, *texts, by_path, outside, *(m.content for m in emu.bot_messages)]
    for text in seen:
        for host_path in (str(settings.data_dir), str(tiny_models_root)):
            assert host_path not in text.replace(str(folder), "").replace(str(tmp_path), ""), text


async def test_malformed_uploads_are_sentences_with_their_line(
    emu: DiscordEmulator, hfcord: HFCordBot, tiny_sentiment_dir: Path
) -> None:
    """Item 3: never an error id; the file and its line."""
    deep = "[" * 5000 + "]" * 5000
    pretty = '{\n  "data": [\n    {"paragraphs": [\n      {"context": "cut sh'
    huge = '{"text": "ok", "label": "a"}\n{"text": "' + "x" * 200_000 + '", "label": "b"}\n'
    for name, data, expected in (
        ("deep.json", deep.encode(), "deep.json line 1 nests JSON more than 100 levels deep"),
        ("cut.json", pretty.encode(), "cut.json line 4 is not valid JSON"),
        ("huge.jsonl", huge.encode(), "huge.jsonl line 2 is 200,000 characters long"),
        ("u16.csv", "text,label\nok,a\n".encode("utf-16-le"), "u16.csv looks like a binary"),
        ("img.csv", b"\x89PNG\r\n\x1a\n" + bytes(64), "img.csv is a PNG image"),
        ("bad.csv", b"text,label\nok,a\ncaf\xe9,b\n", "bad.csv is not UTF-8 text: line 3"),
    ):
        options = start_options(emu, tiny_sentiment_dir, "")
        options["file"] = emu.attachment(name, data)
        text = await answer(emu, "finetune start", options)
        assert expected in text and "error id" not in text, (name, text)
    assert await manager_of(hfcord).recent_jobs(emu.guild.id) == []


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
async def test_a_20_mb_csv_of_tiny_rows_is_parsed_outside_the_bot_and_refused(
    emu: DiscordEmulator, hfcord: HFCordBot, tiny_sentiment_dir: Path, settings: Settings
) -> None:
    """Item 3: parsed in the bot it took about 2 GB and tens of seconds holding the GIL."""
    rows = 4_999_997
    data = b"text,label\n" + b"x,y\n" * rows
    assert len(data) <= settings.finetune_upload_max_bytes
    options = start_options(emu, tiny_sentiment_dir, "")
    options["file"] = emu.attachment("tiny.csv", data)
    before = _peak_rss_mb()
    text = await answer(emu, "finetune start", options)
    assert "tiny.csv line 200,002" not in text  # line numbers are plain
    assert "tiny.csv line 200002 goes past the limit of 200,000 examples" in text, text
    assert _peak_rss_mb() - before < 500  # a few copies of the upload, never its parse
    assert await manager_of(hfcord).recent_jobs(emu.guild.id) == []


async def test_quotas_delete_and_parameter_limits_in_discord(
    emu: DiscordEmulator,
    run_bot: BotRunner,
    make_settings: Callable[..., Settings],
    tiny_sentiment_dir: Path,
    tmp_path: Path,
) -> None:
    """Item 4: per-server caps on active jobs and stored models, /finetune delete (not of a
    promoted model), and the parameter limit for base models and promotions."""
    settings = make_settings(finetune_max_active_jobs=1, finetune_max_stored_models=1)
    async with run_bot(settings) as bot:
        fake_training(bot, tmp_path)
        hang = start_options(emu, tiny_sentiment_dir, GOOD_CSV)
        hang["base_model"] = "fake-hang"  # a hub id: offline, the (stand-in) worker decides
        first = await emu.slash("finetune start", hang, user=emu.admin)
        await first.final()
        full = await answer(emu, "finetune start", start_options(emu, tiny_sentiment_dir, GOOD_CSV))
        assert "already has 1 fine-tuning job(s) queued or running" in full
        await answer(emu, "finetune cancel", {"job": 1})
        await wait_job(bot, 1, {"cancelled"})

        ok = await emu.slash(
            "finetune start", start_options(emu, tiny_sentiment_dir, GOOD_CSV), user=emu.admin
        )
        await ok.final()
        await wait_job(bot, 2, {"completed"})
        stored = await answer(
            emu, "finetune start", start_options(emu, tiny_sentiment_dir, GOOD_CSV)
        )
        assert "keeps 1 fine-tuned model(s); it may keep 1. Delete one with" in stored
        promote = await emu.slash("finetune promote", {"job": 2}, user=emu.admin)
        await promote.final(timeout=60)
        serving = await answer(emu, "finetune delete", {"job": 2})
        assert "serves **sentiment** in this server; go back to the model before it" in serving
        rollback = await emu.slash("finetune rollback", {"task": "sentiment"}, user=emu.admin)
        await rollback.final(timeout=60)
        deleted = await answer(emu, "finetune delete", {"job": 2})
        assert deleted.startswith("Deleted the model of job #2; its record and metrics stay.")
        assert "keeps 0 of at most 1 fine-tuned models" in deleted
        listed = await answer(emu, "finetune list", {})
        assert "**#2** · completed (model deleted)" in listed
        actions = [entry.action for entry in await bot.store.recent_audit(emu.guild.id)]
        assert actions[0] == "finetune.delete"

    small = make_settings(finetune_max_parameters=1000)
    async with run_bot(small) as bot:
        fake_training(bot, tmp_path)
        too_big = await answer(
            emu, "finetune start", start_options(emu, tiny_sentiment_dir, GOOD_CSV)
        )
        assert too_big.startswith("tiny-sentiment has ") and "up to 1K." in too_big
        assert str(tiny_sentiment_dir) not in too_big


async def test_file_names_and_model_names_are_shown_as_typed(
    emu: DiscordEmulator, hfcord: HFCordBot, tiny_sentiment_dir: Path, tmp_path: Path
) -> None:
    """Item 6: a file name with markdown can't bold, link or break the job's texts."""
    fake_training(hfcord, tmp_path)
    options = start_options(emu, tiny_sentiment_dir, GOOD_CSV)
    options["file"] = emu.attachment("**win**__big__~~now~~.csv", GOOD_CSV)
    start = await emu.slash("finetune start", options, user=emu.admin)
    await start.final()
    assert "starts now" in start.text, start.describe()
    job = await wait_job(hfcord, 1, {"completed", "failed"})
    assert job.status == "completed", job.error
    await wait_for(lambda: "Completed" in status_message(emu, 1).content, timeout=30)
    listed = await answer(emu, "finetune list", {})
    for text in (status_message(emu, 1).content, listed):
        assert r"\*\*win\*\*\_\_big\_\_\~\~now\~\~.csv" in text, text
        assert "**win**" not in text


@pytest.mark.slow  # a real training process
async def test_a_failing_worker_says_a_sentence_without_host_paths(
    emu: DiscordEmulator, hfcord: HFCordBot, tiny_models_root: Path
) -> None:
    """Item 6: a base model that doesn't load fails the job with a sentence naming it; the
    details (paths) stay in the bot's log."""
    broken = tiny_models_root / "not-a-model"
    broken.mkdir(exist_ok=True)
    fast_updates(hfcord)
    start = await emu.slash("finetune start", start_options(emu, broken, GOOD_CSV), user=emu.admin)
    await start.final()
    job = await wait_job(hfcord, 1, {"failed", "completed"})
    assert job.status == "failed"
    assert job.error == (
        "Couldn't load not-a-model as a text-classification model: check that it is a "
        "transformers model of a supported kind."
    )
    await wait_for(lambda: any("❌ Fine-tune job #1 failed" in m.content for m in emu.bot_messages))
    for message in emu.bot_messages:
        assert str(tiny_models_root) not in message.content
