"""Local generation: a :class:`~models.runners.base.StreamRunner` over :class:`GenerationSession`.

Each stream creates a session on the model's device thread and then runs it
``generation_chunk_tokens`` tokens per executor job, so encoder batches queued meanwhile run
between chunks; text pieces reach the event loop through a callback as each token is decoded.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from models.generation import GenerationSession
from models.requests import GenerationRequest
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


class LocalGenerationRunner:
    """Streams generations of a causal LM loaded in this process."""

    def __init__(self, model: Any, tokenizer: Any, spec: ModelSpec, run: DeviceRun) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self._run = run

    def open(self, request: GenerationRequest, cancel: CancelFlag | None) -> GenerationStream:
        request = replace(request, params=request.params.clamped(self.spec.max_new_tokens))
        return GenerationStream(lambda stream: self._pieces(stream, request, cancel))

    async def _pieces(
        self, stream: GenerationStream, request: GenerationRequest, cancel: CancelFlag | None
    ) -> AsyncIterator[str]:
        stop = threading.Event()
        job: asyncio.Future[str] | None = None
        getter: asyncio.Future[str] | None = None
        loop = asyncio.get_running_loop()
        try:
            session = await self._run(
                lambda: GenerationSession(
                    self.model,
                    self.tokenizer,
                    request,
                    model_id=self.spec.model_id,
                    model_name=self.spec.name,
                    cancel=_EitherFlag(cancel, stop),
                )
            )
            pieces: asyncio.Queue[str] = asyncio.Queue()

            def emit(piece: str) -> None:
                loop.call_soon_threadsafe(pieces.put_nowait, piece)

            def step() -> str:
                return session.step(self.spec.generation_chunk_tokens, emit)

            while not session.done:
                job = asyncio.ensure_future(self._run(step))
                while not job.done() or not pieces.empty():
                    if not pieces.empty():
                        yield pieces.get_nowait()
                        continue
                    getter = asyncio.ensure_future(pieces.get())
                    await asyncio.wait({job, getter}, return_when=asyncio.FIRST_COMPLETED)
                    if getter.done():
                        piece = getter.result()
                        getter = None
                        yield piece
                    else:
                        getter.cancel()
                        getter = None
                job.result()
                job = None
            stream.stats = session.stats()
        finally:
            stop.set()
            if getter is not None:
                getter.cancel()
            if job is not None and not job.done():
                # The chunk stops at its next token; wait so the session is never left running.
                try:
                    await asyncio.shield(job)
                except Exception:
                    log.debug("generation chunk failed while stopping", exc_info=True)
