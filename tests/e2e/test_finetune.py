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
from tests.support.finetune import wait_for_job, worker_pid, worker_pids
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
    emu: DiscordEmulator, base: Path, data: str, **extra: object
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
