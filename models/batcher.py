"""Gather concurrent requests for one model into batched calls, with a bounded queue."""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from models.background import log_failures
from models.errors import ModelUnavailable, QueueFull
from models.executor import run_in_steps

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Seconds per item assumed before anything was measured (only used for ETAs).
_INITIAL_ITEM_S = 0.05


@dataclass(eq=False)
class _Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    bucket: int
    enqueued: float


class MicroBatcher(Generic[T, R]):
    """Collects items from concurrent ``submit`` calls and processes them in batches.

    ``process`` receives a list of items and returns one result or exception per item, in order;
    it runs through ``run`` (the device executor), one batch at a time. ``process`` may instead
    return a generator whose return value is that list: each of its steps then runs as its own
    job on ``run`` (see :func:`models.executor.run_in_steps`), so a long batch does not hold the
    device thread that other models wait on. A batch holds at most
    ``max_batch`` items of the same length bucket; the worker waits at most ``max_wait_ms``
    after the oldest waiting item arrived before running a partial batch. If ``process`` raises
    for a whole batch, each item is retried alone so one bad input fails only its own request.
    More than ``queue_depth`` waiting items make ``submit`` raise :class:`QueueFull` at once.
    """

    def __init__(
        self,
        process: Callable[
            [Sequence[T]],
            Sequence[R | BaseException] | Generator[None, None, Sequence[R | BaseException]],
        ],
        run: Callable[[Callable[[], Any]], Awaitable[Any]],
        *,
        name: str,
        max_batch: int,
        max_wait_ms: float,
        queue_depth: int,
        size_of: Callable[[T], int] | None = None,
        buckets: Sequence[int] = (),
    ) -> None:
        self._process = process
        self._run = run
        self.name = name
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.queue_depth = queue_depth
        self._size_of = size_of
        self._buckets = tuple(buckets)
        self._queue: list[_Pending[T, R]] = []
        self._running: list[_Pending[T, R]] = []
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self._item_s = _INITIAL_ITEM_S
        self.batches_run = 0
        self.items_run = 0

    @property
    def waiting(self) -> int:
        """Items queued and not yet in a running batch."""
        return len(self._queue)

    def eta_s(self, position: int) -> float:
        """Rough seconds until the item at ``position`` (1 = next) is done."""
        return (position + len(self._running)) * self._item_s

    def _bucket(self, item: T) -> int:
        if not self._buckets or self._size_of is None:
            return 0
        return bisect.bisect_left(self._buckets, self._size_of(item))

    async def submit(self, item: T) -> R:
        """Queue ``item`` and wait for its result; raise its own error if it failed."""
        if self._closed:
            raise ModelUnavailable(
                f"The model {self.name} was unloaded; try again.", model_id=self.name
            )
        if self.waiting >= self.queue_depth:
            position = self.waiting + 1
            raise QueueFull(self.name, position=position, eta_s=self.eta_s(position))
        loop = asyncio.get_running_loop()
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        if self._worker is None or self._worker.done():
            self._worker = log_failures(loop.create_task(self._work(), name=f"batcher:{self.name}"))
        pending: _Pending[T, R] = _Pending(
            item, loop.create_future(), self._bucket(item), loop.time()
        )
        self._queue.append(pending)
        self._wakeup.set()
        return await pending.future

    def _take_batch(self) -> list[_Pending[T, R]]:
        # Cancelled callers leave done futures behind; drop them without running their items.
        self._queue = [p for p in self._queue if not p.future.done()]
        if not self._queue:
            return []
        bucket = self._queue[0].bucket
        batch: list[_Pending[T, R]] = []
        rest: list[_Pending[T, R]] = []
        for pending in self._queue:
            if pending.bucket == bucket and len(batch) < self.max_batch:
                batch.append(pending)
            else:
                rest.append(pending)
        self._queue = rest
        return batch

    def _ready(self) -> bool:
        bucket = self._queue[0].bucket
        return sum(1 for p in self._queue if p.bucket == bucket) >= self.max_batch

    async def _work(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while not self._closed:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            deadline = self._queue[0].enqueued + self.max_wait_s
            while self._queue and not self._ready():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            batch = self._take_batch()
            if batch:
                await self._run_batch(batch)

    async def _run_batch(self, batch: list[_Pending[T, R]]) -> None:
        loop = asyncio.get_running_loop()
        items = [p.item for p in batch]
        started = loop.time()
        self._running = batch
        try:
            results = await self._call(items)
            if len(batch) > 1 and isinstance(results, BaseException):
                log.warning(
                    "batch of %d for %s failed (%s); retrying items one by one",
                    len(batch),
                    self.name,
                    results,
                )
                results = []
                for item in items:
                    single = await self._call([item])
                    results.append(single if isinstance(single, BaseException) else single[0])
            elif isinstance(results, BaseException):
                results = [results]
        finally:
            self._running = []
        elapsed = loop.time() - started
        # Exponential moving average of seconds per item, for queue ETAs.
        self._item_s = 0.8 * self._item_s + 0.2 * (elapsed / len(batch))
        self.batches_run += 1
        self.items_run += len(batch)
        for pending, result in zip(batch, results, strict=True):
            if pending.future.done():
                continue
            if isinstance(result, BaseException):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)

    async def _call(self, items: list[T]) -> Sequence[R | BaseException] | BaseException:
        try:
            results: Sequence[R | BaseException] = await run_in_steps(
                self._run, lambda: self._process(items)
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("batch call for %s raised", self.name, exc_info=True)
            return exc
        if len(results) != len(items):
            return RuntimeError(
                f"{self.name}: processing returned {len(results)} results for {len(items)} inputs"
            )
        return results

    async def close(self) -> None:
        """Stop the worker; requests still waiting fail with :class:`ModelUnavailable`."""
        self._closed = True
        stranded = [*self._running, *self._queue]
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            except Exception:  # logged when it happened (log_failures)
                pass
        for pending in stranded:
            if not pending.future.done():
                pending.future.set_exception(
                    ModelUnavailable(
                        f"The model {self.name} was unloaded; try again.", model_id=self.name
                    )
                )
        self._queue.clear()
