"""A tiny OpenAI-compatible server (aiohttp) whose every reply a test chooses, for engine faults.

    async with FakeEngine() as engine:              # engine.base_url: http://127.0.0.1:P/v1
        engine.plan(Status(503), Stream(["Hel", "lo"]))   # the next chat requests, in order
        ...
        engine.requests        # the JSON bodies of the chat requests, in order
        engine.disconnects     # streams the client closed before their end

With nothing planned a chat request streams :data:`DEFAULT_PIECES`. ``/v1/models`` lists
``models`` (or answers ``models_status`` when set).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiohttp import web

DEFAULT_PIECES = ("Hello", " there", ",", " friend", ".")


@dataclass(frozen=True)
class Stream:
    """A streamed answer: a role chunk, one chunk per piece (``delay`` apart), the finish
    reason (with ``usage`` when ``usage``), then ``[DONE]``. ``cut_after`` pieces, the
    connection is dropped instead (an engine killed mid-stream); ``error_after`` pieces, an
    error event is sent and the stream ends."""

    pieces: Sequence[str] = DEFAULT_PIECES
    delay: float = 0.0
    finish: str = "stop"
    usage: bool = True
    usage_chunk: bool = False  # usage in a chunk of its own after the finish (OpenAI's way)
    cut_after: int | None = None
    error_after: int | None = None
    first_delay: float = 0.0
    silent_after_finish: bool = False  # no [DONE]: the connection stays open, quiet


@dataclass(frozen=True)
class Status:
    """An HTTP error answer, OpenAI-shaped (``{"error": {"message": ...}}``)."""

    code: int
    message: str = "error"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Hang:
    """Never answer (a hung engine)."""


@dataclass(frozen=True)
class Raw:
    """These SSE ``data:`` lines as they are (malformed replies), then the end."""

    lines: Sequence[str]


Reply = Stream | Status | Hang | Raw


class FakeEngine:
    def __init__(self, models: Sequence[str] = ("fake-model",)) -> None:
        self.models = list(models)
        self.models_status: int | None = None
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.request_times: list[float] = []
        self.disconnects = 0
        self.pieces_sent = 0
        self.completed = 0
        self._plan: deque[Reply] = deque()
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.port = 0

    def plan(self, *replies: Reply) -> None:
        """The replies to the next chat requests, in order (then the default stream)."""
        self._plan.extend(replies)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> FakeEngine:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()  # hung and sleeping handlers end now
        if self._runner is not None:
            await self._runner.cleanup()

    async def _models(self, request: web.Request) -> web.StreamResponse:
        if self.models_status is not None:
            return web.json_response({"detail": "Not Found"}, status=self.models_status)
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        self.request_times.append(time.monotonic())
        reply = self._plan.popleft() if self._plan else Stream()
        if isinstance(reply, Status):
            payload = {"error": {"message": reply.message, "type": "error", "code": reply.code}}
            return web.json_response(payload, status=reply.code, headers=reply.headers)
        if isinstance(reply, Hang):
            await self._closing.wait()
            return web.json_response({}, status=503)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            if isinstance(reply, Raw):
                for line in reply.lines:
                    await response.write(f"data: {line}\n\n".encode())
                await response.write(b"data: [DONE]\n\n")
            else:
                await self._stream(request, response, body, reply)
        except (ConnectionResetError, ConnectionError):
            self.disconnects += 1
            return response
        return response

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when the server closes."""
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            pass

    async def _stream(
        self, request: web.Request, response: web.StreamResponse, body: dict[str, Any], s: Stream
    ) -> None:
        model = body.get("model", "")

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            data = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            return f"data: {json.dumps(data)}\n\n".encode()

        await response.write(chunk({"role": "assistant"}))
        if s.first_delay:
            await self._pause(s.first_delay)
        for index, piece in enumerate(s.pieces):
            if s.cut_after is not None and index == s.cut_after:
                assert request.transport is not None
                request.transport.abort()  # the engine dies: the connection is reset
                return
            if s.error_after is not None and index == s.error_after:
                await response.write(b'data: {"error": {"message": "generation failed"}}\n\n')
                return
            if index and s.delay:
                await self._pause(s.delay)
            await response.write(chunk({"content": piece}))
            self.pieces_sent += 1
        usage = {
            "prompt_tokens": 7,
            "completion_tokens": len(s.pieces),
            "total_tokens": 7 + len(s.pieces),
        }
        if s.usage and not s.usage_chunk:
            await response.write(chunk({}, s.finish, usage=usage))
        else:
            await response.write(chunk({}, s.finish))
        if s.usage and s.usage_chunk:
            data = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0}
            data.update(model=model, choices=[], usage=usage)
            await response.write(f"data: {json.dumps(data)}\n\n".encode())
        if s.silent_after_finish:
            await self._pause(60)
        await response.write(b"data: [DONE]\n\n")
        self.completed += 1


class KeywordClassifierRunner:
    """A remote batched runner (as a Text Embeddings Inference classifier would be), standing in
    for one in registry tests: built from the spec alone, "positive" when the text has "good".

    ``threads`` records the thread each forward pass ran on; ``closed`` whether the registry
    closed it; ``made`` every instance, newest last.
    """

    made: ClassVar[list[KeywordClassifierRunner]] = []

    def __init__(self, spec: Any) -> None:
        from models.engines import EngineHealth

        KeywordClassifierRunner.made.append(self)
        self.spec = spec
        self.threads: list[str] = []
        self.closed = False
        self._health = EngineHealth(spec.engine.kind, spec.engine.host, "unknown")

    def size_of(self, request: Any) -> int:
        return len(request.text)

    def prepare(self, request: Any) -> str:
        return str(request.text)

    def rows(self, prepared: str) -> list[dict[str, list[int]]]:
        return [{"input_ids": [1] * len(prepared)}]

    def forward(self, rows: Sequence[dict[str, list[int]]]) -> list[int]:
        import threading

        self.threads.append(threading.current_thread().name)
        return [len(row["input_ids"]) for row in rows]

    def finish(self, request: Any, prepared: str, outputs: Sequence[int]) -> Any:
        from models.engines import EngineHealth
        from models.results import ClassificationResult, LabelScore

        label = "POSITIVE" if "good" in prepared else "NEGATIVE"
        self._health = EngineHealth(self.spec.engine.kind, self.spec.engine.host, "answering")
        return ClassificationResult(label, 0.9, (LabelScore(label, 0.9),), self.spec.model_id)

    def health(self) -> Any:
        return self._health

    async def probe(self) -> Any:
        from models.engines import EngineProbe

        return EngineProbe("openai", self.spec.engine.host, self.spec.model_id, ("kw",), None, 0.0)

    async def aclose(self) -> None:
        self.closed = True
