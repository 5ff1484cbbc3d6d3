"""Generation streams: the async iterator callers read, and the slots that bound how many run.

Importing this module does not import torch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from models.errors import QueueFull
from models.results import GenerationStats

# A first guess of one generation's duration, for queue ETAs before any was measured.
_INITIAL_STREAM_S = 10.0


class GenerationStream:
    """An async iterator of generated text pieces; ``stats`` is set once it is exhausted.

    Errors (:class:`QueueFull`, :class:`ModelLoading`, :class:`ModelUnavailable`,
    :class:`InvalidInput`) surface on the first ``__anext__``. Leaving the loop early (or
    ``aclose()``) stops generation at the next token.
    """

    def __init__(self, source: Callable[[GenerationStream], AsyncIterator[str]]) -> None:
        self.stats: GenerationStats | None = None
        self._pieces = source(self)

    def __aiter__(self) -> GenerationStream:
        return self

    async def __anext__(self) -> str:
        return await self._pieces.__anext__()

    async def aclose(self) -> None:
        await self._pieces.aclose()  # type: ignore[attr-defined]

    async def collect(self) -> GenerationStats:
        """Consume the stream and return its stats."""
        async for _ in self:
            pass
        assert self.stats is not None
        return self.stats


class StreamSlots:
    """At most ``limit`` streams of one model generate at once, and at most ``queue_depth``
    wait for a turn; past that, :meth:`hold` raises :class:`QueueFull` with an ETA."""

    def __init__(self, model_id: str, *, limit: int, queue_depth: int) -> None:
        self.model_id = model_id
        self.limit = limit
        self.queue_depth = queue_depth
        self.active = 0
        self.waiting = 0
        self._slots = asyncio.Semaphore(limit)
        self._stream_s = _INITIAL_STREAM_S

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """Wait for a slot (or fail fast when the queue is full) and hold it in the block."""
        if self._slots.locked() and self.waiting >= self.queue_depth:
            position = self.waiting + 1
            raise QueueFull(
                self.model_id, position=position, eta_s=position * self._stream_s / self.limit
            )
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
            self._slots.release()
            # Exponential moving average of a stream's duration, for queue ETAs.
            self._stream_s = 0.8 * self._stream_s + 0.2 * (loop.time() - started)
