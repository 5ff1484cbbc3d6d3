"""Running a parser over untrusted bytes in a child process, with a time and memory limit.

``await run_isolated("package.module:function", data, *args)`` starts ``python -m bot.isolated``,
which imports only that module, calls ``function(data, *args)`` and prints its JSON-able result.
A crafted file can then at worst use up the child's memory cap or its time, never the bot's
process: the child is killed at the deadline, and its address space is capped.

The function signals a problem with the input by raising :class:`Refused` (or a subclass) with
a sentence for the user; that sentence comes back as :class:`IsolatedRefusal`. Anything else
the child does wrong (another exception, running out of memory, the deadline, a crash) comes
back as an :class:`IsolatedRefusal` with a plain sentence, and the details go to the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MEMORY_BYTES = 1 << 30  # 1 GiB of address space
# A child's answer larger than this is refused (a parser's output is bounded by its caller).
MAX_OUTPUT_BYTES = 256 << 20


class Refused(ValueError):
    """Raised by an isolated function: the input cannot be used; the message says why."""


class IsolatedRefusal(Exception):
    """The isolated function refused the input or failed; the message is for the user."""


# The only variables a child gets: no token or other secret of the bot's reaches it.
_CHILD_VARIABLES = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TEMP", "TMP", "SYSTEMROOT")


def _child_environment() -> dict[str, str]:
    """A minimal environment, with this checkout first on the path (so the child runs the
    same code as the bot, installed or not)."""
    root = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    environment = {name: os.environ[name] for name in _CHILD_VARIABLES if name in os.environ}
    environment["PYTHONPATH"] = root + (os.pathsep + path if path else "")
    environment["PYTHONDONTWRITEBYTECODE"] = "1"
    return environment


def _limit_memory(memory_bytes: int) -> None:
    try:
        import resource
    except ImportError:  # not on POSIX: only the deadline applies
        return
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


async def run_isolated(
    function: str,
    data: bytes,
    *args: str,
    what: str = "the file",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> Any:
    """``function(data, *args)`` in a child process; its result, or :class:`IsolatedRefusal`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.isolated",
        function,
        str(memory_bytes),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_child_environment(),
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(data), timeout_s)
    except TimeoutError:
        log.warning("%s took more than %.0f s in %s; stopped it", what, timeout_s, function)
        raise IsolatedRefusal(
            f"Reading {what} took too long (over {timeout_s:.0f} s); try a smaller or simpler file."
        ) from None
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0 or len(stdout) > MAX_OUTPUT_BYTES:
        log.warning(
            "%s: %s exited with %s: %s",
            what,
            function,
            process.returncode,
            stderr.decode("utf-8", "replace")[-2000:],
        )
        raise IsolatedRefusal(f"I couldn't read {what}; it may be damaged or too complex.")
    try:
        answer = json.loads(stdout)
    except ValueError:
        log.warning("%s: %s wrote something that is not JSON", what, function)
        raise IsolatedRefusal(
            f"I couldn't read {what}; it may be damaged or too complex."
        ) from None
    if "refused" in answer:
        raise IsolatedRefusal(str(answer["refused"]))
    return answer["result"]


def _child(argv: list[str]) -> int:
    # Run as __main__, this module is not the bot.isolated the target imports Refused from.
    from bot.isolated import Refused as TargetRefused

    target, memory, *args = argv
    _limit_memory(int(memory))
    module, _, name = target.partition(":")
    function = getattr(importlib.import_module(module), name)
    data = sys.stdin.buffer.read()
    try:
        answer: dict[str, Any] = {"result": function(data, *args)}
    except TargetRefused as exc:
        answer = {"refused": str(exc)}
    except (MemoryError, RecursionError):
        answer = {"refused": "That file is too large or too deeply nested to read here."}
    sys.stdout.write(json.dumps(answer, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(_child(sys.argv[1:]))
