"""MicroBatcher: batching, ordering, isolation of bad inputs, bounded queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from models.batcher import MicroBatcher
from models.errors import InvalidInput, ModelUnavailable, QueueFull
from tests.support.waiting import wait_until


class Recorder:
    """A fake model: doubles ints, rejects negatives, records each batch it saw."""

    def __init__(self, delay_s: float = 0.0, explode_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.delay_s = delay_s
        self.explode_on = explode_on

    def process(self, items: Sequence[int]) -> list[int | BaseException]:
        import time

        self.batches.append(list(items))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.explode_on is not None and self.explode_on in items and len(items) > 1:
            # A failure that takes the whole batch down (like a tensor shape error).
            raise RuntimeError("batch exploded")
        return [InvalidInput(f"bad item {item}") if item < 0 else item * 2 for item in items]


@pytest.fixture
def executor():
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown(wait=True)


def make_batcher(
    recorder: Recorder, executor: ThreadPoolExecutor, **kwargs: object
) -> MicroBatcher[int, int]:
    async def run(fn: Callable[[], Sequence[int | BaseException]]) -> Sequence[int | BaseException]:
        return await asyncio.get_running_loop().run_in_executor(executor, fn)

    options: dict = {"max_batch": 8, "max_wait_ms": 20, "queue_depth": 100}
    options.update(kwargs)
    return MicroBatcher(recorder.process, run, name="fake-model", **options)


async def test_concurrent_requests_share_batches_and_keep_their_own_results(executor) -> None:
    recorder = Recorder()
    batcher = make_batcher(recorder, executor, max_batch=8)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(20)))
    assert results == [i * 2 for i in range(20)]
    assert all(len(batch) <= 8 for batch in recorder.batches)
    assert len(recorder.batches) <= 4  # 20 items, batches of up to 8
    # First in, first served: batches preserve arrival order.
    assert [item for batch in recorder.batches for item in batch] == list(range(20))
    await batcher.close()


async def test_a_lone_request_runs_after_max_wait(executor) -> None:
    recorder = Recorder()
    batcher = make_batcher(recorder, executor, max_wait_ms=30)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await batcher.submit(5) == 10
    assert loop.time() - started < 1.0
    assert recorder.batches == [[5]]
    await batcher.close()


async def test_invalid_input_fails_only_its_own_request(executor) -> None:
    recorder = Recorder()
    batcher = make_batcher(recorder, executor)
    results = await asyncio.gather(
        batcher.submit(1), batcher.submit(-1), batcher.submit(3), return_exceptions=True
    )
    assert results[0] == 2 and results[2] == 6
    assert isinstance(results[1], InvalidInput)
    assert len(recorder.batches) == 1
    await batcher.close()


async def test_a_batch_that_raises_is_retried_item_by_item(executor) -> None:
    recorder = Recorder(explode_on=13)

    def process(items: Sequence[int]) -> list[int | BaseException]:
        if 13 in items and len(items) == 1:
            raise ValueError("13 is unlucky")
        return recorder.process(items)

    async def run(fn):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(executor, fn)

    batcher: MicroBatcher[int, int] = MicroBatcher(
        process, run, name="fake", max_batch=8, max_wait_ms=20, queue_depth=10
    )
    results = await asyncio.gather(*(batcher.submit(i) for i in (1, 13, 3)), return_exceptions=True)
    assert results[0] == 2 and results[2] == 6
    assert isinstance(results[1], ValueError)
    await batcher.close()


async def test_queue_full_fails_fast_with_position_and_eta(executor) -> None:
    recorder = Recorder(delay_s=0.2)
    batcher = make_batcher(recorder, executor, max_batch=1, max_wait_ms=0, queue_depth=3)
    first = asyncio.ensure_future(batcher.submit(0))
    # The first is running; the next three fill the queue.
    await wait_until(lambda: recorder.batches == [[0]], what="the first batch")
    waiting = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2, 3)]
    await wait_until(lambda: batcher.waiting == 3, what="three queued items")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(QueueFull) as info:
        await batcher.submit(99)
    assert loop.time() - started < 0.05
    assert info.value.position == 4
    assert info.value.eta_s > 0
    assert "busy" in str(info.value) and "fake-model" in str(info.value)
    assert await asyncio.gather(first, *waiting) == [0, 2, 4, 6]
    await batcher.close()


async def test_length_buckets_keep_short_and_long_inputs_apart(executor) -> None:
    recorder = Recorder()
    batcher = make_batcher(
        recorder, executor, max_batch=8, size_of=lambda item: item, buckets=(10,)
    )
    results = await asyncio.gather(*(batcher.submit(i) for i in (1, 50, 2, 60, 3)))
    assert results == [2, 100, 4, 120, 6]
    assert sorted(map(sorted, recorder.batches)) == [[1, 2, 3], [50, 60]]
    await batcher.close()


async def test_cancelled_waiters_are_skipped(executor) -> None:
    recorder = Recorder(delay_s=0.1)
    batcher = make_batcher(recorder, executor, max_batch=1, max_wait_ms=0)
    first = asyncio.ensure_future(batcher.submit(1))
    await wait_until(lambda: recorder.batches == [[1]], what="the first batch")
    doomed = asyncio.ensure_future(batcher.submit(2))
    kept = asyncio.ensure_future(batcher.submit(3))
    await wait_until(lambda: batcher.waiting == 2, what="two queued items")
    doomed.cancel()
    assert await first == 2 and await kept == 6
    assert [2] not in recorder.batches
    await batcher.close()


async def test_close_fails_waiting_requests(executor) -> None:
    recorder = Recorder(delay_s=0.1)
    batcher = make_batcher(recorder, executor, max_batch=1, max_wait_ms=0)
    running = asyncio.ensure_future(batcher.submit(1))
    await wait_until(lambda: recorder.batches == [[1]], what="the first batch")
    waiting = asyncio.ensure_future(batcher.submit(2))
    await wait_until(lambda: batcher.waiting == 1, what="a queued item")
    await batcher.close()
    for request in (running, waiting):
        with pytest.raises(ModelUnavailable):
            await request
    with pytest.raises(ModelUnavailable):
        await batcher.submit(3)


async def test_a_batch_given_as_steps_lets_other_jobs_run_between_them(executor) -> None:
    steps_run: list[int] = []

    def process(items: Sequence[int]) -> Generator[None, None, list[int | BaseException]]:
        for item in items:
            yield  # each step is a device job of its own
            steps_run.append(item)
            time.sleep(0.02)
        return [item * 2 for item in items]

    async def run(fn: Callable[[], object]) -> object:
        return await asyncio.get_running_loop().run_in_executor(executor, fn)

    batcher: MicroBatcher[int, int] = MicroBatcher(
        process, run, name="stepped", max_batch=8, max_wait_ms=1, queue_depth=10
    )
    batch = [asyncio.ensure_future(batcher.submit(i)) for i in range(8)]
    await wait_until(lambda: len(steps_run) >= 1, what="the batch's first step")
    # Another model's job, submitted to the same single thread while the batch runs.
    done_at = await run(lambda: len(steps_run))
    assert isinstance(done_at, int) and done_at < 8
    assert await asyncio.gather(*batch) == [i * 2 for i in range(8)]
    await batcher.close()
