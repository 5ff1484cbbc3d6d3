"""Run a function on untrusted input in a separate, bounded process.

Parsing what users upload (training data, documents) can take a lot of memory and CPU, hold the
GIL for seconds, or hit a parser's recursion limit. :func:`run_isolated` runs such a function in
a fresh interpreter (``python -m bot.isolation``), never in the bot process::

    summary = run_isolated(
        parse_file,                     # importable by module and name (a top-level function)
        "/abs/path/upload.csv",         # arguments and the result must pickle
        limits=IsolationLimits(memory_mb=1024, timeout_s=60),
        refusals=(DatasetError,),       # re-raised here as the same type, with the message
    )

The child gets an address-space limit (``RLIMIT_AS``) and a CPU-time limit, a wall-clock
timeout (then it is killed with its process group), a minimal environment
(`models.training.sandbox.child_environment`: no token or key), an empty temporary working
directory (so nothing resolves against the bot's), and dies with the process that started it.
Exceptions of the ``refusals`` types come back as themselves (their class must take one message
argument); running out of memory or time, or any other failure, raises :class:`IsolationError`,
whose :meth:`~IsolationError.sentence` phrases it for a user. The result is unpickled with only
classes (never functions) from ``result_modules`` and a few builtins allowed.

Blocking: call it off the event loop (``await asyncio.to_thread(run_isolated, ...)``).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import pickle
import resource
import signal
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar, cast

from models.training.sandbox import bind_to_parent, child_environment

log = logging.getLogger(__name__)

T = TypeVar("T")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_STDERR_TAIL = 4000
_SAFE_BUILTINS = frozenset(
    {"set", "frozenset", "complex", "bytearray", "slice", "range", "object", "int", "float"}
)


@dataclass(frozen=True)
class IsolationLimits:
    """What the child may use: memory (address space), time (wall clock, and as much CPU)."""

    memory_mb: int = 1024
    timeout_s: float = 60.0
    # Variables added to the child's minimal environment.
    env: Mapping[str, str] = field(default_factory=dict)


Failure = Literal["memory", "time", "crash"]


class IsolationError(Exception):
    """The child gave no answer: it ran out of memory or time, or failed unexpectedly."""

    def __init__(self, failure: Failure, limits: IsolationLimits, detail: str = "") -> None:
        super().__init__(f"isolated call failed ({failure}){': ' + detail if detail else ''}")
        self.failure = failure
        self.limits = limits
        self.detail = detail

    def sentence(self, subject: str, *, advice: str = "try a smaller file") -> str:
        """A sentence for a user about ``subject`` (e.g. "moods.csv")."""
        if self.failure == "memory":
            return (
                f"{subject} needs more than {self.limits.memory_mb:,} MB of memory to read; "
                f"{advice}."
            )
        if self.failure == "time":
            return f"Reading {subject} took longer than {self.limits.timeout_s:.0f} s; {advice}."
        return f"{subject} could not be read (the reader stopped unexpectedly); check it and try again."


@dataclass(frozen=True)
class _Call:
    module: str
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    refusals: tuple[tuple[str, str], ...]  # (module, name) of the exception types passed back


def run_isolated(
    function: Callable[..., T],
    *args: Any,
    limits: IsolationLimits | None = None,
    refusals: Collection[type[Exception]] = (),
    result_modules: Collection[str] | None = None,
    python: str = sys.executable,
    **kwargs: Any,
) -> T:
    """``function(*args, **kwargs)`` in a bounded child process; see the module docstring.

    ``result_modules``: top-level packages whose classes the result may contain (default: the
    function's own package). Raises one of ``refusals`` or :class:`IsolationError`.
    """
    limits = limits or IsolationLimits()
    module, name = _importable_name(function)
    refusal_types = tuple(refusals)
    payload = pickle.dumps(
        _Call(module, name, args, dict(kwargs), tuple(map(_importable_name, refusal_types))),
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    env = child_environment(extra=limits.env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    command = [
        python,
        "-m",
        "bot.isolation",
        str(limits.memory_mb * 1024 * 1024),
        str(max(1, int(limits.timeout_s) + 1)),
    ]
    with tempfile.TemporaryDirectory(prefix="hfcord-isolated-") as workdir:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=workdir,
            start_new_session=True,  # a timeout kills whatever it started too
        )
        try:
            out, err = proc.communicate(payload, timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            _log_failure(function, "timed out", err)
            raise IsolationError("time", limits) from None
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
    returncode = proc.returncode
    if returncode == -signal.SIGXCPU or returncode == -signal.SIGKILL:
        _log_failure(function, f"killed ({returncode})", err)
        raise IsolationError("time", limits)
    try:
        kind, value = _ResultUnpickler(
            io.BytesIO(out), {*(result_modules or {module.split(".")[0]}), "builtins"}
        ).load()
    except Exception as exc:
        _log_failure(function, f"exit {returncode}, no readable result ({exc!r})", err)
        raise IsolationError("crash", limits, f"exit code {returncode}") from None
    if kind == "ok":
        return cast(T, value)
    if kind == "refused":
        index, message = value
        raise refusal_types[index](message)
    if kind == "memory":
        _log_failure(function, "ran out of memory", err)
        raise IsolationError("memory", limits)
    _log_failure(function, f"failed: {value}", err)
    raise IsolationError("crash", limits, str(value))


def _importable_name(obj: Callable[..., Any]) -> tuple[str, str]:
    module, name = obj.__module__, obj.__qualname__
    if module == "__main__" or "<" in name:
        raise ValueError(f"{name} must be defined at a module's top level to run isolated")
    return module, name


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _log_failure(function: Callable[..., Any], what: str, stderr: bytes) -> None:
    tail = stderr[-_STDERR_TAIL:].decode("utf-8", "replace")
    log.warning("isolated %s %s; its stderr ends:\n%s", function.__qualname__, what, tail)


class _ResultUnpickler(pickle.Unpickler):
    """Unpickles only classes from the allowed packages (and a few builtins): a result can't
    make this process call a function."""

    def __init__(self, stream: BinaryIO, packages: Collection[str]) -> None:
        super().__init__(stream)
        self._packages = frozenset(packages)

    def find_class(self, module: str, name: str) -> Any:
        top = module.split(".")[0]
        if top == "builtins" and name not in _SAFE_BUILTINS:
            raise pickle.UnpicklingError(f"builtins.{name} is not allowed in a result")
        if top not in self._packages:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a result")
        found = super().find_class(module, name)
        if not isinstance(found, type):
            raise pickle.UnpicklingError(f"{module}.{name} is not a class")
        return found


# --------------------------------------------------------------------------- the child


def _child_main(argv: list[str]) -> int:
    bind_to_parent()
    memory_bytes, cpu_s = int(argv[0]), int(argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    # Results go to a private copy of stdout; anything a library prints goes to stderr.
    results = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    answer: tuple[str, Any]
    try:
        call: _Call = pickle.load(sys.stdin.buffer)
        refusals = tuple(_resolve(module, name) for module, name in call.refusals)
        function = _resolve(call.module, call.name)
        try:
            answer = ("ok", function(*call.args, **call.kwargs))
        except refusals as exc:  # type: ignore[misc]
            index = next(i for i, kind in enumerate(refusals) if isinstance(exc, kind))
            answer = ("refused", (index, str(exc)))
        data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
    except MemoryError:
        data = pickle.dumps(("memory", None))
    except Exception as exc:
        traceback.print_exc()
        data = pickle.dumps(("failed", type(exc).__name__))
    results.write(data)
    results.flush()
    return 0


def _resolve(module: str, name: str) -> Any:
    found: Any = importlib.import_module(module)
    for part in name.split("."):
        found = getattr(found, part)
    return found


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
