"""Background tasks that stay referenced until they end, and whose failures reach the log.

asyncio keeps only a weak reference to a task: one nobody holds can be garbage-collected
mid-way, and an exception nobody retrieves only shows up as "Task exception was never
retrieved" at exit, if at all. Every fire-and-forget task in hfcord goes through
:class:`BackgroundTasks` (or, for a task its owner already holds, :func:`log_failures`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def _report(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.error("background task %r failed", task.get_name(), exc_info=error)


def log_failures(task: asyncio.Task[T]) -> asyncio.Task[T]:
    """Log ``task``'s exception (not its cancellation) when it ends; returns the task."""
    task.add_done_callback(_report)
    return task


class BackgroundTasks:
    """Tasks started and not awaited by their starter: held until done, failures logged."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        """Run ``coro`` as a task on the running loop, referenced until it ends."""
        task = log_failures(asyncio.get_running_loop().create_task(coro, name=name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def running(self) -> int:
        """How many tasks have not ended yet."""
        return len(self._tasks)

    async def wait(self) -> None:
        """Wait for every task running now to end (their failures are logged, not raised)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
