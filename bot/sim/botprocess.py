"""The real bot as a child process connected to an emulator: start it, SIGKILL it, stop it, and
follow its memory, for fault and soak tests that need a process boundary.

    bot = BotProcess(api_url=emu.base_url, bot_args=["--env-file", str(env_file)],
                     cwd=run_dir, log_path=run_dir / "bot-1.log")
    await bot.start()
    ...
    bot.kill()                   # SIGKILL: no cleanup runs in the bot
    await bot.wait(10)
    code = await bot.stop()      # SIGTERM, then SIGKILL after the timeout

The child runs ``python -m bot.sim.external`` (see :mod:`bot.sim.external`) with this checkout
first on its ``PYTHONPATH`` and without the parent's hfcord settings or token in its
environment: only what ``env`` and the env file give it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import bot

log = logging.getLogger(__name__)

# This checkout's root: the child imports the same `bot` package as the parent.
SOURCE_ROOT = Path(bot.__file__).resolve().parents[1]


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment without hfcord settings or the bot token, this checkout first
    on PYTHONPATH, plus ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("HFCORD_") and name != "DISCORD_TOKEN"
    }
    path = [str(SOURCE_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
    env.update(extra or {})
    return env


def _proc_status_kib(pid: int, field: str) -> int | None:
    """A ``VmHWM``/``VmRSS`` line of /proc/PID/status in KiB (None off Linux or once it ended)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class BotProcess:
    """One run of the bot process. ``bot_args`` go to ``python -m bot`` (default: run)."""

    def __init__(
        self,
        *,
        api_url: str,
        bot_args: Sequence[str] = (),
        cwd: Path,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        self.api_url = api_url
        self.bot_args = list(bot_args)
        self.cwd = cwd
        self.log_path = log_path
        self.env = dict(env) if env is not None else child_environment()
        self.python = python
        self.peak_rss_kib = 0
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def argv(self) -> list[str]:
        return [
            self.python,
            "-m",
            "bot.sim.external",
            "--api-url",
            self.api_url,
            "--",
            *self.bot_args,
        ]

    async def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("this BotProcess was already started; make a new one")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
            )
        finally:
            os.close(log_fd)  # the child has its own copy
        log.info("bot process %s started (log %s)", self._proc.pid, self.log_path)

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the bot process was not started")
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def sample_memory(self) -> int:
        """Read the process's peak resident set so far (VmHWM); returns the peak in KiB."""
        if self.running:
            peak = _proc_status_kib(self.pid, "VmHWM") or _proc_status_kib(self.pid, "VmRSS")
            if peak is not None:
                self.peak_rss_kib = max(self.peak_rss_kib, peak)
        return self.peak_rss_kib

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a power cut would: the bot runs no cleanup."""
        self.sample_memory()
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM, as `docker stop` or systemd send: the bot closes cleanly."""
        self.sample_memory()
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)

    async def wait(self, timeout: float | None = None) -> int:
        """The exit status (negative: the signal that ended it); TimeoutError if still running."""
        if self._proc is None:
            raise RuntimeError("the bot process was not started")
        return await asyncio.wait_for(self._proc.wait(), timeout)

    async def stop(self, timeout: float = 30.0) -> tuple[int, bool]:
        """SIGTERM and wait; SIGKILL after ``timeout``. Returns (exit status, exited cleanly)."""
        if self._proc is None:
            raise RuntimeError("the bot process was not started")
        if not self.running:
            return await self.wait(), False
        self.terminate()
        try:
            return await self.wait(timeout), True
        except TimeoutError:
            log.warning("bot process %s ignored SIGTERM for %.0f s; killing it", self.pid, timeout)
            self.kill()
            return await self.wait(), False
