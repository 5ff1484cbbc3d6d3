"""One worker thread per device owns every model call on that device."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

_threads_lock = threading.Lock()
# torch's thread pools are process-wide: remember what this process chose so a second registry
# (tests, CLI) neither fights over it nor fails on set_num_interop_threads.
_configured_threads: int | None = None


def available_cpus() -> int:
    """CPUs this process may run on (respects affinity masks and cgroup cpusets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_torch_threads() -> int:
    """Torch threads when none are configured: all CPUs but one (at least one)."""
    return max(1, available_cpus() - 1)


def configure_torch_threads(threads: int | None) -> int:
    """Set torch's intra-op threads once per process; return the count in effect.

    ``None`` means one thread per available CPU but one, which stays free for the event loop
    and tokenization (on 2 CPUs: 1 thread; measured in bench/serving.py, two OpenMP threads
    competing with the loop and other processes made single requests over 10x slower).
    Inter-op parallelism is set to 1: the registry runs one op at a time per device.
    """
    global _configured_threads
    import torch

    with _threads_lock:
        wanted = threads if threads is not None else default_torch_threads()
        if _configured_threads is None:
            try:
                torch.set_num_interop_threads(1)
            except RuntimeError:
                # Already started (something ran torch before us); harmless.
                pass
        if _configured_threads != wanted:
            torch.set_num_threads(wanted)
            _configured_threads = wanted
            log.info("torch uses %d intra-op threads", wanted)
        return wanted


class CallThreads:
    """Runs blocking calls one at a time, each on a new thread that ends with the call (model
    loads: the registry's loader).

    Why not a lasting worker thread: a thread that ran torch keeps its OpenMP thread team for
    as long as it lives. With a second team alive beside a device thread's, the process has more
    OpenMP threads than CPUs, and libgomp then lets idle threads sleep at once instead of
    spinning briefly, so every small op on the device thread pays a wake-up: after the first
    load, generation ran 1.7x slower, encoder batches 1.5x, a loop of small ops 4x (measured with
    2 torch threads on 2 CPUs; bench/threads.py). A thread that ends takes its team with it.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._one_at_a_time = threading.Lock()
        self._live: set[threading.Thread] = set()
        self._live_lock = threading.Lock()
        self._closed = False

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` on a thread of its own, after any call already running."""
        if self._closed:
            raise RuntimeError(f"{self._name} is shut down")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            if future.done():  # the caller stopped waiting
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        def call() -> None:
            try:
                with self._one_at_a_time:
                    if self._closed:
                        raise RuntimeError(f"{self._name} is shut down")
                    outcome: tuple[Any, BaseException | None] = (_with_threads(fn, *args), None)
            except BaseException as exc:  # handed to the caller, as an executor would
                outcome = (None, exc)
            finally:
                with self._live_lock:
                    self._live.discard(threading.current_thread())
            try:
                loop.call_soon_threadsafe(settle, *outcome)
            except RuntimeError:  # the loop closed while this ran: nobody waits
                pass

        thread = threading.Thread(target=call, name=self._name, daemon=True)
        with self._live_lock:
            self._live.add(thread)
        thread.start()
        return await future

    @property
    def live(self) -> int:
        """Threads started and not yet ended."""
        with self._live_lock:
            return len(self._live)

    def shutdown(self, *, wait: bool = True) -> None:
        """Refuse new calls (and those still queued); wait for the running one when ``wait``."""
        self._closed = True
        if wait:
            with self._live_lock:
                threads = list(self._live)
            for thread in threads:
                thread.join()


def _with_threads(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` with torch's intra-op threads as this process chose (a new thread starts
    with OpenMP's default)."""
    if _configured_threads is not None:
        import torch

        torch.set_num_threads(_configured_threads)
    return fn(*args)


class DeviceExecutors:
    """A single-thread executor per device (``"cpu"``, ``"cuda:0"``...), created on first use.

    Fast tokenizers are not thread-safe and models are not built for parallel calls, so one
    thread per device runs all preprocessing, forward passes and postprocessing; calls from
    different models interleave in submission order.
    """

    def __init__(self, torch_threads: int | None = None) -> None:
        self._threads = torch_threads
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _initializer(self) -> None:
        import torch

        torch.set_num_threads(_configured_threads or default_torch_threads())

    def executor(self, device: str) -> ThreadPoolExecutor:
        key = _normalize(device)
        with self._lock:
            if self._closed:
                raise RuntimeError("the device executors are shut down")
            executor = self._executors.get(key)
            if executor is None:
                executor = ThreadPoolExecutor(
                    max_workers=1,
                    thread_name_prefix=f"hfcord-{key.replace(':', '')}",
                    initializer=self._initializer,
                )
                self._executors[key] = executor
            return executor

    async def run(self, device: str, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` on ``device``'s thread and await its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor(device), functools.partial(fn, *args))

    def shutdown(self, *, wait: bool = True) -> None:
        with self._lock:
            self._closed = True
            executors = list(self._executors.values())
            self._executors.clear()
        for executor in executors:
            executor.shutdown(wait=wait, cancel_futures=True)


def _advance(steps: Generator[None, None, T]) -> tuple[bool, T | None]:
    try:
        next(steps)
    except StopIteration as stop:
        return True, stop.value
    return False, None


async def run_in_steps(
    run: Callable[[Callable[[], Any]], Awaitable[Any]],
    start: Callable[[], T | Generator[None, None, T]],
) -> T:
    """Run ``start()`` through ``run`` (a device thread) and return its result.

    When ``start()`` returns a generator, its first step runs in the same job and every further
    step as a job of its own, so jobs submitted meanwhile (other models' batches, generation
    chunks) run between steps; the generator's return value is the result. The generator only
    ever runs on ``run``'s thread, one step at a time.
    """

    def first() -> tuple[Generator[None, None, T] | None, bool, T | None]:
        out = start()
        if isinstance(out, Generator):
            done, value = _advance(out)
            return out, done, value
        return None, True, out

    steps, done, value = await run(first)
    while not done:
        assert steps is not None
        done, value = await run(lambda: _advance(steps))
    return value  # type: ignore[return-value]


def _normalize(device: str) -> str:
    device = device.strip().lower()
    return "cuda:0" if device == "cuda" else device
