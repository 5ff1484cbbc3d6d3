"""Run one training job in a separate process and follow it from asyncio.

The bot's job manager (and the CLI) start a :class:`TrainingProcess`, iterate its events,
and may cancel it. A process that dies without its final event (killed from outside, out
of memory) still yields a final ``failed`` event with a reason, so a job never hangs.

The worker runs on what a server admin sent, so it gets a minimal environment (no bot token,
API key or hub token: `models.training.sandbox`), an empty working directory (nothing relative
resolves to a file of this machine; every path in its spec is absolute), its scratch files in
the run folder (removed with it), and it dies with the process that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from models.background import log_failures
from models.training.sandbox import child_environment
from models.training.spec import DataSource, EventKind, JobSpec, JobStatus

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SPEC_FILE = "job.json"
CANCEL_FILE = "cancel"
LOG_FILE = "worker.log"
WORKDIR = "workdir"  # the worker's working directory: empty
_LINE_LIMIT = 1 << 20


@dataclass(frozen=True)
class TrainingEvent:
    """One event from the worker; ``data`` is the raw JSON."""

    kind: str  # an EventKind value
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def phase(self) -> str | None:
        return self.data.get("phase")

    @property
    def step(self) -> int | None:
        return self.data.get("step")

    @property
    def max_steps(self) -> int | None:
        return self.data.get("max_steps")

    @property
    def epoch(self) -> float | None:
        return self.data.get("epoch")

    @property
    def loss(self) -> float | None:
        return self.data.get("loss")

    @property
    def eta_s(self) -> float | None:
        return self.data.get("eta_s")

    @property
    def metrics(self) -> Mapping[str, float]:
        return self.data.get("metrics") or {}

    @property
    def status(self) -> str | None:
        return self.data.get("status")

    @property
    def output_dir(self) -> str | None:
        return self.data.get("output_dir")

    @property
    def error(self) -> str | None:
        return self.data.get("error")


@dataclass(frozen=True)
class TrainingResult:
    """How a job ended."""

    status: JobStatus  # completed, failed or cancelled
    metrics: Mapping[str, float]
    output_dir: str | None
    error: str | None = None
    plot: str | None = None
    primary_metric: str | None = None
    returncode: int | None = None
    wall_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == JobStatus.COMPLETED

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "metrics": dict(self.metrics),
            "output_dir": self.output_dir,
            "error": self.error,
            "plot": self.plot,
            "primary_metric": self.primary_metric,
            "returncode": self.returncode,
            "wall_s": self.wall_s,
        }


def _absolute(source: DataSource | None) -> DataSource | None:
    if source is None or source.path is None:
        return source
    return replace(source, path=os.path.abspath(source.path))


def _prepare_run_dir(spec: JobSpec, run_dir: Path | str | None) -> tuple[Path, JobSpec, Path, int]:
    """Create the run folder with job.json (paths made absolute, pointing at its cancel flag
    and scratch space), an empty working directory, and open worker.log."""
    folder = Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix="hfcord-job-"))
    folder = folder.absolute()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / WORKDIR).mkdir(exist_ok=True)
    cancel_file = folder / CANCEL_FILE
    cancel_file.unlink(missing_ok=True)
    spec = replace(
        spec,
        train=_absolute(spec.train) or spec.train,
        validation=_absolute(spec.validation),
        output_dir=os.path.abspath(spec.output_dir),
        cancel_file=str(cancel_file),
        scratch_dir=str(folder),
    )
    spec_path = folder / SPEC_FILE
    spec_path.write_text(spec.to_json(), encoding="utf-8")
    log_fd = os.open(folder / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    return folder, spec, spec_path, log_fd


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class TrainingProcess:
    """A handle on one running worker process. Events can be iterated by one consumer."""

    def __init__(self, proc: asyncio.subprocess.Process, run_dir: Path, spec: JobSpec) -> None:
        self._proc = proc
        self.run_dir = run_dir
        self.spec = spec
        self._queue: asyncio.Queue[TrainingEvent | None] = asyncio.Queue()
        self._result: TrainingResult | None = None
        self._cancel_requested = False
        self._reader = log_failures(
            asyncio.create_task(self._read(), name=f"training-reader-{proc.pid}")
        )

    @classmethod
    async def start(
        cls,
        spec: JobSpec,
        *,
        run_dir: Path | str | None = None,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
        hub_token: bool = False,
    ) -> TrainingProcess:
        """Write the spec into ``run_dir`` (job.json, cancel flag, worker.log) and start the
        worker. Its environment is the allowed part of ``env`` (default: this process's);
        ``hub_token`` passes the operator's hub token too (the operator's CLI only)."""
        folder, spec, spec_path, log_fd = await asyncio.to_thread(_prepare_run_dir, spec, run_dir)
        child_env = child_environment(env, hub_token=hub_token)
        # The worker imports models.*; make the project importable even when not installed.
        child_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PROJECT_ROOT), child_env.get("PYTHONPATH", "")) if p
        )
        try:
            proc = await asyncio.create_subprocess_exec(
                python,
                "-m",
                "models.training.worker",
                str(spec_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_fd,
                env=child_env,
                cwd=str(folder / WORKDIR),
                # Own process group: a Ctrl-C in the bot's terminal doesn't reach it, and a kill
                # takes any children with it.
                start_new_session=True,
                limit=_LINE_LIMIT,
            )
        finally:
            os.close(log_fd)
        logger.info("training job started: pid %s, run dir %s", proc.pid, folder)
        return cls(proc, folder, spec)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def result(self) -> TrainingResult | None:
        """The outcome once the process has ended, else None."""
        return self._result

    @property
    def log_path(self) -> Path:
        return self.run_dir / LOG_FILE

    def log_tail(self, max_chars: int = 2000) -> str:
        """The end of the worker's stderr log (for error reports)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                size = log.tell()
                log.seek(max(0, size - max_chars))
                return log.read().decode("utf-8", "replace")
        except OSError:
            return ""

    async def _read(self) -> None:
        final: dict[str, Any] | None = None
        stdout = self._proc.stdout
        assert stdout is not None
        try:
            while True:
                try:
                    line = await stdout.readline()
                except ValueError:  # a line over the limit: not one of our events
                    continue
                if not line:
                    break
                try:
                    data = json.loads(line)
                except json.JSONDecodeError:
                    logger.debug("worker %s printed a non-event line: %r", self.pid, line[:200])
                    continue
                if not isinstance(data, dict) or "event" not in data:
                    continue
                if data["event"] == EventKind.FINAL:
                    final = data
                self._queue.put_nowait(TrainingEvent(str(data["event"]), data))
            returncode = await self._proc.wait()
            if final is None:
                final = self._synthesize_final(returncode)
                self._queue.put_nowait(TrainingEvent(EventKind.FINAL, final))
            self._result = TrainingResult(
                status=JobStatus.of_outcome(final.get("status")),
                metrics=dict(final.get("metrics") or {}),
                output_dir=final.get("output_dir"),
                error=final.get("error"),
                plot=final.get("plot"),
                primary_metric=final.get("primary_metric"),
                returncode=returncode,
                wall_s=final.get("wall_s"),
            )
            logger.info(
                "training job %s ended: %s (exit %s)", self.pid, self._result.status, returncode
            )
        finally:
            self._queue.put_nowait(None)

    def _synthesize_final(self, returncode: int) -> dict[str, Any]:
        if self._cancel_requested:
            return {
                "event": EventKind.FINAL,
                "status": JobStatus.CANCELLED,
                "metrics": {},
                "output_dir": None,
                "error": None,
            }
        if returncode < 0:
            reason = (
                f"The training process was killed ({_signal_name(-returncode)}), for example by "
                "the out-of-memory killer or an operator; nothing was saved."
            )
        else:
            # Its log may name files of this machine: it goes to the bot's log, not the user.
            logger.warning(
                "training process %s exited with code %s without a result; its log ends:\n%s",
                self.pid,
                returncode,
                self.log_tail(),
            )
            reason = (
                f"The training process exited with code {returncode} without a result; "
                "nothing was saved."
            )
        return {
            "event": EventKind.FINAL,
            "status": JobStatus.FAILED,
            "metrics": {},
            "output_dir": None,
            "error": reason,
        }

    async def events(self) -> AsyncIterator[TrainingEvent]:
        """Progress events as they come, ending with exactly one ``final`` event."""
        while True:
            event = await self._queue.get()
            if event is None:
                self._queue.put_nowait(None)  # later iterators end at once
                return
            yield event

    def __aiter__(self) -> AsyncIterator[TrainingEvent]:
        return self.events()

    async def wait(self) -> TrainingResult:
        """Wait for the process to end (events keep queueing for an iterator)."""
        await asyncio.shield(self._reader)
        assert self._result is not None
        return self._result

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signum)

    async def cancel(self, grace_s: float = 30.0) -> TrainingResult:
        """Ask the worker to stop between steps; kill it if still running after ``grace_s``."""
        if self._result is not None:
            return self._result
        self._cancel_requested = True
        flag = Path(self.spec.cancel_file or self.run_dir / CANCEL_FILE)
        with contextlib.suppress(OSError):
            await asyncio.to_thread(flag.touch)
        self._signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), timeout=grace_s)
        except TimeoutError:
            logger.warning(
                "training job %s ignored cancel for %.0f s; killing it", self.pid, grace_s
            )
            self._signal(signal.SIGKILL)
        return await self.wait()

    def kill(self) -> None:
        """Kill at once (used on bot shutdown); the result becomes cancelled."""
        self._cancel_requested = True
        self._signal(signal.SIGKILL)
