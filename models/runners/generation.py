"""Local generation: a :class:`~models.runners.base.StreamRunner` over a continuous decoder.

Every stream of the model goes to one :class:`~models.continuous.ContinuousDecoder`, which
decodes the active streams together, one batched forward pass per token. A driver task on the
event loop runs the decoder ``generation_chunk_tokens`` steps per executor job while any stream
is waiting or generating, so encoder batches queued meanwhile run between jobs; text pieces and
each stream's end reach the event loop through callbacks.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from models.continuous import ContinuousDecoder, Ticket
from models.errors import ModelUnavailable
from models.requests import GenerationRequest
from models.results import GenerationStats
from models.runners.base import CancelFlag, DeviceRun
from models.specs import ModelSpec
from models.streams import GenerationStream

log = logging.getLogger(__name__)


class _EitherFlag:
    """Set when the caller's cancel flag or the stream's own stop flag is set."""

    def __init__(self, caller: CancelFlag | None, own: threading.Event) -> None:
        self._caller = caller
        self._own = own

    def is_set(self) -> bool:
        return self._own.is_set() or (self._caller is not None and self._caller.is_set())


@dataclass(frozen=True)
class _End:
    """A stream's last item: its stats, or the error that ended it."""

    outcome: GenerationStats | BaseException


class LocalGenerationRunner:
    """Streams generations of a causal LM loaded in this process, decoded together."""

    def __init__(self, model: Any, tokenizer: Any, spec: ModelSpec, run: DeviceRun) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self._run = run
        self.decoder = ContinuousDecoder(
            model, tokenizer, model_id=spec.model_id, model_name=spec.name
        )
        self._driver: asyncio.Task[None] | None = None

    def open(self, request: GenerationRequest, cancel: CancelFlag | None) -> GenerationStream:
        request = replace(request, params=request.params.clamped(self.spec.max_new_tokens))
        return GenerationStream(lambda stream: self._pieces(stream, request, cancel))

    async def _pieces(
        self, stream: GenerationStream, request: GenerationRequest, cancel: CancelFlag | None
    ) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[str | _End] = asyncio.Queue()
        stop = threading.Event()
        ended = False

        def on_piece(piece: str) -> None:
            loop.call_soon_threadsafe(items.put_nowait, piece)

        def on_end(outcome: GenerationStats | BaseException) -> None:
            loop.call_soon_threadsafe(items.put_nowait, _End(outcome))

        self.decoder.submit(Ticket(request, _EitherFlag(cancel, stop), on_piece, on_end))
        self._drive()
        try:
            while True:
                item = await items.get()
                if isinstance(item, _End):
                    ended = True
                    if isinstance(item.outcome, BaseException):
                        raise item.outcome
                    stream.stats = item.outcome
                    return
                yield item
        finally:
            if not ended:
                # Left early: the stream stops at the decoder's next step; wait until it has
                # left the batch, so nothing of it runs once the caller moved on.
                stop.set()
                await asyncio.shield(self._until_end(items))

    async def _until_end(self, items: asyncio.Queue[str | _End]) -> None:
        while not isinstance(await items.get(), _End):
            pass

    def _drive(self) -> None:
        """Start the driver task unless it runs (streams are submitted on the event loop, which
        is also where the driver decides to stop, so no stream is left without one)."""
        if self._driver is None or self._driver.done():
            self._driver = asyncio.get_running_loop().create_task(
                self._steps(), name=f"generation:{self.spec.name}"
            )

    async def _steps(self) -> None:
        chunk = self.spec.generation_chunk_tokens
        try:
            while self.decoder.busy:
                await self._run(lambda: self.decoder.run(chunk))
        except Exception:
            # The device thread is gone (the registry closed) or the decoder broke; no job
            # runs now. Every stream ends with an error rather than waiting forever.
            log.warning("generation for %s stopped", self.spec.model_id, exc_info=True)
            self.decoder.fail_all(
                ModelUnavailable(
                    f"The model {self.spec.name} stopped generating; try again.",
                    model_id=self.spec.model_id,
                    reason="generation stopped",
                )
            )
