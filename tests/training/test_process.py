"""TrainingProcess: a real worker process followed from asyncio; cancel, kill, crashes."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
from pathlib import Path

import pytest

from models.training.datasets import TrainTask
from models.training.process import TrainingEvent, TrainingProcess
from models.training.spec import EXIT_CANCELLED, EXIT_FAILED, DataSource, JobSpec

# Worker start-up imports torch and transformers: allow for a slow, shared CI machine.
START_TIMEOUT_S = 180


def _sst_sample(shared_data: Path, path: Path, n: int) -> Path:
    lines = (shared_data / "sst2" / "train.tsv").read_bytes().split(b"\r\n")
    path.write_bytes(b"\r\n".join(lines[: n + 1]) + b"\r\n")
    return path


def _spec(base: Path, train: Path, out: Path, **kw: object) -> JobSpec:
    return JobSpec(
        task=TrainTask.TEXT_CLASSIFICATION,
        base_model=str(base),
        train=DataSource(path=str(train)),
        output_dir=str(out),
        batch_size=8,
        max_length=32,
        progress_interval_s=0.0,
        **kw,  # type: ignore[arg-type]
    )


async def _until_progress(job: TrainingProcess) -> list[TrainingEvent]:
    seen: list[TrainingEvent] = []
    async with asyncio.timeout(START_TIMEOUT_S):
        async for event in job:
            seen.append(event)
            if event.kind == "progress":
                return seen
    raise AssertionError(f"no progress event; got {[e.kind for e in seen]}\n{job.log_tail()}")


async def _training_long(
    base: Path, shared_data: Path, tmp_path: Path, out: Path
) -> TrainingProcess:
    """A real worker on a run far too long to finish, once it reports progress."""
    train = _sst_sample(shared_data, tmp_path / "sst.tsv", 400)
    job = await TrainingProcess.start(_spec(base, train, out, epochs=100))
    await _until_progress(job)
    return job


def _fake_python(path: Path, script: str) -> str:
    """An executable standing in for the interpreter (it ignores the worker arguments)."""
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


async def test_job_runs_to_completion(
    tiny_sentiment_dir: Path, shared_data: Path, tmp_path: Path
) -> None:
    train = _sst_sample(shared_data, tmp_path / "sst.tsv", 120)
    out = tmp_path / "models" / "job-1"
    job = await TrainingProcess.start(
        _spec(tiny_sentiment_dir, train, out, epochs=1), run_dir=tmp_path / "run"
    )
    kinds = []
    async with asyncio.timeout(START_TIMEOUT_S):
        async for event in job:
            kinds.append(event.kind)
    result = await job.wait()
    assert result.ok, (result, job.log_tail())
    assert result.returncode == 0
    assert kinds[-1] == "final" and kinds.count("final") == 1
    assert {"phase", "dataset", "progress", "eval"} <= set(kinds)
    assert Path(result.output_dir or "") == out and (out / "config.json").is_file()
    assert result.plot == str(out / "training_curves.png")
    assert "accuracy" in result.metrics and result.primary_metric == "accuracy"
    assert (tmp_path / "run" / "job.json").is_file()


async def test_cancel_is_graceful(
    tiny_sentiment_dir: Path, shared_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    job = await _training_long(tiny_sentiment_dir, shared_data, tmp_path, out)
    result = await job.cancel(grace_s=60)
    assert result.status == "cancelled", job.log_tail()
    assert result.returncode == EXIT_CANCELLED  # stopped itself: not killed
    assert not out.exists()
    kinds = [event.kind async for event in job]
    assert kinds[-1] == "final"


async def test_killed_from_outside_is_failed_with_reason(
    tiny_sentiment_dir: Path, shared_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    job = await _training_long(tiny_sentiment_dir, shared_data, tmp_path, out)
    os.kill(job.pid, signal.SIGKILL)  # e.g. the OOM killer
    async with asyncio.timeout(30):
        finals = [event async for event in job if event.kind == "final"]
    result = await job.wait()
    assert result.status == "failed"
    assert result.returncode == -signal.SIGKILL
    assert result.error and "killed (SIGKILL)" in result.error
    assert finals[0].error == result.error
    assert not out.exists()


async def test_malformed_data_fails_with_line_number(
    tiny_sentiment_dir: Path, tmp_path: Path
) -> None:
    train = tmp_path / "bad.tsv"
    train.write_text("label\tsentence\n1\tgood\n0\tbad\n\tno label\n")
    job = await TrainingProcess.start(_spec(tiny_sentiment_dir, train, tmp_path / "o"))
    async with asyncio.timeout(START_TIMEOUT_S):
        result = await job.wait()
    assert result.status == "failed" and result.returncode == EXIT_FAILED
    assert result.error == "bad.tsv line 4 has no label in column 'label'."


async def test_cancel_kills_after_grace_period(tmp_path: Path) -> None:
    python = _fake_python(
        tmp_path / "stubborn",
        'trap \'\' TERM\necho \'{"event": "phase", "phase": "training"}\'\n'
        "for i in $(seq 600); do sleep 0.1; done\n",
    )
    spec = _spec(tmp_path, tmp_path / "x.tsv", tmp_path / "o")
    job = await TrainingProcess.start(spec, python=python)
    first = await anext(aiter(job))
    assert first.phase == "training"
    async with asyncio.timeout(30):
        result = await job.cancel(grace_s=0.5)
    assert result.status == "cancelled"
    assert result.returncode == -signal.SIGKILL


async def test_exit_without_final_event_logs_the_log_and_tells_a_sentence(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    python = _fake_python(
        tmp_path / "crashy",
        "echo 'not json'\necho 'Segmentation fault in /opt/libfoo.so' >&2\nexit 3\n",
    )
    job = await TrainingProcess.start(
        _spec(tmp_path, tmp_path / "x.tsv", tmp_path / "o"), python=python
    )
    async with asyncio.timeout(30):
        result = await job.wait()
    assert result.status == "failed" and result.returncode == 3
    # The log may name files of this machine: the bot's log gets it, the user a sentence.
    assert result.error == (
        "The training process exited with code 3 without a result; nothing was saved."
    )
    assert "Segmentation fault in /opt/libfoo.so" in caplog.text
    events = [event async for event in job]
    assert [e.kind for e in events] == ["final"]


async def test_cancel_after_end_returns_the_result(tmp_path: Path) -> None:
    python = _fake_python(
        tmp_path / "quick",
        'echo \'{"event": "final", "status": "completed", "metrics": {"accuracy": 1.0}, '
        '"output_dir": "/x"}\'\n',
    )
    job = await TrainingProcess.start(
        _spec(tmp_path, tmp_path / "x.tsv", tmp_path / "o"), python=python
    )
    first = await job.wait()
    assert first.ok and first.metrics == {"accuracy": 1.0}
    assert await job.cancel(0.0) is first
