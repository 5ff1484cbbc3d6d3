"""The loader's threads: one call at a time, each on a thread that ends with it."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from models.executor import CallThreads
from models.registry import ModelRegistry
from models.specs import ModelSpec
from models.tasks import Task


async def test_each_call_runs_on_a_thread_of_its_own_that_has_ended_when_it_returns() -> None:
    threads = CallThreads("test-loader")
    seen: list[threading.Thread] = []

    def call(value: int) -> int:
        seen.append(threading.current_thread())
        return value * 2

    assert await threads.run(call, 1) == 2
    assert await threads.run(call, 2) == 4
    assert seen[0] is not seen[1]
    assert threading.main_thread() not in seen
    for thread in seen:
        thread.join(timeout=5)
        assert not thread.is_alive()
    assert threads.live == 0


async def test_calls_run_one_at_a_time_in_the_order_they_came() -> None:
    threads = CallThreads("test-loader")
    running = 0
    most = 0
    order: list[int] = []
    lock = threading.Lock()

    def call(value: int) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        threading.Event().wait(0.02)
        order.append(value)
        with lock:
            running -= 1

    await asyncio.gather(*(threads.run(call, n) for n in range(5)))
    assert most == 1
    assert sorted(order) == list(range(5))


async def test_an_error_reaches_the_caller_and_the_next_call_still_runs() -> None:
    threads = CallThreads("test-loader")

    def fails() -> None:
        raise ValueError("broken weights")

    with pytest.raises(ValueError, match="broken weights"):
        await threads.run(fails)
    assert await threads.run(lambda: "fine") == "fine"


async def test_after_shutdown_calls_are_refused() -> None:
    threads = CallThreads("test-loader")
    threads.shutdown(wait=True)
    with pytest.raises(RuntimeError, match="shut down"):
        await threads.run(lambda: None)


async def test_no_loader_thread_outlives_a_load(tiny_sentiment_dir: Path) -> None:
    registry = ModelRegistry([ModelSpec(Task.SENTIMENT, str(tiny_sentiment_dir))])
    try:
        await registry.preload()
        assert (await registry.classify("a fine film")).label
        # A lasting loader thread would keep its OpenMP team beside the device thread's.
        loaders = [t for t in threading.enumerate() if t.name.startswith("hfcord-loader")]
        for thread in loaders:
            thread.join(timeout=5)
        assert not any(thread.is_alive() for thread in loaders)
    finally:
        await registry.close()
