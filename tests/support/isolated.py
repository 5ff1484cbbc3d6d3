"""Functions for `bot.isolation.run_isolated` tests: run in the isolated child, so they must be
importable by module and name (the child imports this module; nothing here imports the bot)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any


class Refused(ValueError):
    """A refusal the parent asks to get back as itself."""


@dataclass(frozen=True)
class Surroundings:
    pid: int
    parent_pid: int
    cwd: str
    cwd_entries: tuple[str, ...]
    env_names: tuple[str, ...]


def surroundings() -> Surroundings:
    """Where the child runs: its pid, its working directory and what it holds, its variables."""
    return Surroundings(
        os.getpid(), os.getppid(), os.getcwd(), tuple(os.listdir(".")), tuple(sorted(os.environ))
    )


def echo(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


def refuse(message: str) -> None:
    raise Refused(message)


def fail() -> None:
    raise RuntimeError("an unexpected bug at /srv/secret/path")


def allocate(megabytes: int) -> int:
    """Hold ``megabytes`` of memory at once."""
    block = bytearray(megabytes * 1024 * 1024)
    return len(block)


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def spin(seconds: float) -> int:
    """Burn CPU for ``seconds``."""
    end, count = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        count += 1
    return count


def give_a_function() -> Any:
    """A result the parent must refuse to unpickle: a function (here os.system)."""
    return os.system


def exit_hard() -> None:
    os._exit(7)
