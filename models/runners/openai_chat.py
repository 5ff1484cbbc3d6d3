"""Remote generation: a :class:`~models.runners.base.StreamRunner` over an OpenAI-compatible
chat-completions server (vLLM, Text Generation Inference, llama.cpp's server, Ollama, LM Studio,
``transformers serve``), through the official ``openai`` async client.

The request's chat messages go to the server as they are, so the server applies its model's chat
template (``GenerationParams.use_chat_template``, a local model's choice, does not apply here). Engine faults become one sentence naming the service's host (never a hang): the
client has connect and read timeouts (:class:`~models.engines.Engine`); before the first piece a
connection failure, timeout, 429 or 5xx is tried again with back-off, within a time budget;
repeated failures open a :class:`~models.engines.CircuitBreaker`, during which requests are
refused at once. Stopping (the cancel flag, or closing the stream) closes the HTTP response, so
the server sees the client go and stops generating too.

Token counts come from the server's ``usage`` (asked for with ``stream_options.include_usage``,
or sent unasked, as ``transformers serve`` does); when a server sends none (or the stream was
stopped before it came) the count is the number of content chunks received, which is one token
per chunk on the servers above but may differ elsewhere. A server that refuses
``stream_options`` is asked again without it, and never again with it.

Importing this module imports ``openai`` but not torch.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import openai

from models.engines import CircuitBreaker, Engine, EngineHealth, EngineProbe, whole_seconds
from models.errors import EngineUnavailable
from models.requests import GenerationParams, GenerationRequest
from models.results import FinishReason, GenerationStats
from models.runners.base import CancelFlag
from models.specs import ModelSpec
from models.streams import GenerationStream

log = logging.getLogger(__name__)

# Sent when no API key is configured: local engines ignore it, and the client needs one.
NO_API_KEY = "no-key-configured"
# How often a stream waiting for the server's next chunk looks at the cancel flag.
CANCEL_POLL_S = 0.05
# Listing models (a probe) waits at most this long, whatever the read timeout.
PROBE_TIMEOUT_S = 5.0
# After the finish reason, how long the usage chunk and the end of the stream may take.
TRAILER_WAIT_S = 2.0

_END = object()
_CANCELLED = object()


class MalformedReply(Exception):
    """A streamed chunk that is not a chat-completion chunk."""


@dataclass(frozen=True)
class _Failure:
    """One failed attempt, classified."""

    sentence: str  # what the user is told (the wait is added when raised)
    retriable: bool  # worth another attempt before the first piece
    engine_fault: bool  # counts towards the circuit breaker
    retry_after_s: float | None = None
    with_wait: bool = True  # the sentence ends with "try again in N s"
    detail: str = ""  # for the log and the operator


def chat_messages(request: GenerationRequest) -> list[dict[str, str]]:
    """The request's conversation as chat-completions messages."""
    return [{"role": m.role, "content": m.content} for m in request.messages]


def sampling(params: GenerationParams) -> dict[str, Any]:
    """Chat-completions sampling arguments for clamped ``params``.

    Greedy decoding is temperature 0. ``repetition_penalty`` has no OpenAI equivalent
    (``frequency_penalty`` works differently) and is left to the server's defaults.
    """
    values: dict[str, Any] = {"max_tokens": params.max_new_tokens}
    if params.do_sample:
        values["temperature"] = params.temperature
        values["top_p"] = params.top_p
    else:
        values["temperature"] = 0.0
    if params.seed is not None:
        values["seed"] = params.seed
    return values


def read_chunk(chunk: Any) -> tuple[str, str | None, Any]:
    """(content piece, finish reason, usage) of one streamed chunk; :class:`MalformedReply`
    when it is not a chat-completion chunk."""
    choices = getattr(chunk, "choices", None)
    if not isinstance(choices, list):
        raise MalformedReply(f"a chunk without a list of choices: {type(chunk).__name__}")
    usage = getattr(chunk, "usage", None)
    piece, finish = "", None
    for choice in choices[:1]:  # n=1: one choice
        delta = getattr(choice, "delta", None)
        content = getattr(delta, "content", None) if delta is not None else None
        if content is not None and not isinstance(content, str):
            raise MalformedReply(f"content of type {type(content).__name__}")
        piece = content or ""
        reason = getattr(choice, "finish_reason", None)
        finish = reason if isinstance(reason, str) else None
    return piece, finish, usage


def serves(listed: tuple[str, ...], model: str) -> bool:
    """Whether a server listing ``listed`` serves ``model`` (Ollama lists ``name:latest`` for
    the ``name`` its API accepts)."""
    return model in listed or f"{model}:latest" in listed


def _finish_reason(reason: str | None) -> FinishReason:
    return "length" if reason == "length" else "stop"


def _usage_count(usage: Any, name: str) -> int | None:
    value = getattr(usage, name, None) if usage is not None else None
    return value if isinstance(value, int) and value >= 0 else None


def _retry_after(exc: openai.APIStatusError) -> float | None:
    """The server's Retry-After (seconds, or retry-after-ms), when it gives one."""
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) * scale
        except ValueError:
            continue
        if value >= 0:
            return value
    return None


class OpenAIChatRunner:
    """Streams chat completions from an OpenAI-compatible server (``spec.engine``) for
    ``spec.model_id``, the model's name on that server.

    ``client`` is for tests (an ``openai.AsyncOpenAI``); by default one is made from the engine's
    settings, with the client's own retries off (this runner retries, within its budget).
    """

    def __init__(self, spec: ModelSpec, *, client: openai.AsyncOpenAI | None = None) -> None:
        if spec.engine is None:
            raise ValueError("OpenAIChatRunner needs a spec with an engine")
        self.spec = spec
        self.engine: Engine = spec.engine
        self.host = self.engine.host
        self._client = client or openai.AsyncOpenAI(
            base_url=self.engine.base_url,
            api_key=self.engine.api_key or NO_API_KEY,
            max_retries=0,
            timeout=openai.Timeout(
                self.engine.read_timeout_s, connect=self.engine.connect_timeout_s
            ),
        )
        self._breaker = CircuitBreaker(self.engine.breaker_failures, self.engine.breaker_pause_s)
        self._health = EngineHealth(self.engine.kind, self.host, "unknown")
        self._ask_usage = True

    # ----------------------------------------------------------------- StreamRunner

    def open(self, request: GenerationRequest, cancel: CancelFlag | None) -> GenerationStream:
        params = request.params.clamped(self.spec.max_new_tokens)
        return GenerationStream(lambda stream: self._pieces(stream, request, params, cancel))

    async def _pieces(
        self,
        out: GenerationStream,
        request: GenerationRequest,
        params: GenerationParams,
        cancel: CancelFlag | None,
    ) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        parts: list[str] = []
        usage: Any = None
        finish: FinishReason | None = None
        attempt = 0
        while finish is None:
            if cancel is not None and cancel.is_set():
                finish = "cancelled"  # stopped before (another) request went out
                break
            self._refuse_while_paused()
            attempt += 1
            stream: Any = None
            try:
                stream = await self._create(request, params)
                iterator = stream.__aiter__()
                while True:
                    chunk = await self._next(iterator, cancel)
                    if chunk is _END:
                        finish = "stop"  # a stream that ends without a finish reason
                        break
                    if chunk is _CANCELLED:
                        finish = "cancelled"
                        break
                    piece, reason, chunk_usage = read_chunk(chunk)
                    usage = chunk_usage or usage
                    if piece:
                        if not parts:
                            self._answered((loop.time() - started) * 1000)
                        parts.append(piece)
                        yield piece
                    if reason is not None:
                        finish = _finish_reason(reason)
                        # the usage may follow in one more chunk without choices
                        usage = await self._trailing_usage(iterator, usage)
                        break
            except Exception as exc:
                failure = await self._classify(exc, first_piece_sent=bool(parts))
                if failure is None:  # stream_options refused: ask again without it
                    continue
                if failure.engine_fault:
                    self._breaker.record_failure()
                wait = self._backoff(attempt, failure)
                if (
                    not parts
                    and failure.retriable
                    and attempt < self.engine.max_attempts
                    and self._breaker.retry_in() is None
                    and loop.time() + wait - started <= self.engine.retry_budget_s
                ):
                    log.info(
                        "engine %s: attempt %d failed (%s); again in %.2f s",
                        self.host,
                        attempt,
                        failure.detail,
                        wait,
                    )
                    if await self._sleep_unless_cancelled(wait, cancel):
                        finish = "cancelled"
                    continue
                raise self._unavailable(failure) from None
            finally:
                if stream is not None:
                    await self._close(stream)
        if not parts and finish != "cancelled":  # answered, with nothing to say
            self._answered((loop.time() - started) * 1000)
        new_tokens = _usage_count(usage, "completion_tokens")
        if new_tokens is None or finish == "cancelled":
            new_tokens = len(parts)  # one token per chunk on the usual servers (see above)
        out.stats = GenerationStats(
            text="".join(parts),
            prompt_tokens=_usage_count(usage, "prompt_tokens") or 0,
            new_tokens=new_tokens,
            seconds=loop.time() - started,
            finish_reason=finish,
            model_id=self.spec.model_id,
            model_name=self.spec.name,
        )

    async def _create(self, request: GenerationRequest, params: GenerationParams) -> Any:
        extra: dict[str, Any] = {}
        if self._ask_usage:
            extra["stream_options"] = {"include_usage": True}
        return await self._client.chat.completions.create(
            model=self.spec.model_id,
            messages=chat_messages(request),  # type: ignore[arg-type]
            stream=True,
            **sampling(params),
            **extra,
        )

    @staticmethod
    async def _next(iterator: AsyncIterator[Any], cancel: CancelFlag | None) -> Any:
        """The next chunk, :data:`_END`, or :data:`_CANCELLED` as soon as ``cancel`` is set."""
        if cancel is None:
            return await anext(iterator, _END)
        if cancel.is_set():
            return _CANCELLED
        pending = asyncio.ensure_future(anext(iterator, _END))
        while True:
            done, _ = await asyncio.wait({pending}, timeout=CANCEL_POLL_S)
            if done:
                return pending.result()
            if cancel.is_set():
                pending.cancel()
                try:
                    await pending
                except (asyncio.CancelledError, Exception):
                    pass  # the read was abandoned on purpose; the stream is closed next
                return _CANCELLED

    @staticmethod
    async def _trailing_usage(iterator: AsyncIterator[Any], usage: Any) -> Any:
        """After the finish reason: read to the end (``[DONE]``) for a usage-only chunk
        (OpenAI's ``include_usage`` sends one), for at most :data:`TRAILER_WAIT_S`, keeping what
        was seen if the rest is late or unreadable."""
        try:
            async with asyncio.timeout(TRAILER_WAIT_S):
                async for chunk in iterator:
                    usage = getattr(chunk, "usage", None) or usage
        except (TimeoutError, Exception):
            log.debug("reading the end of a finished stream failed", exc_info=True)
        return usage

    @staticmethod
    async def _close(stream: Any) -> None:
        """Close the HTTP response (the server sees the client go); never raises."""
        try:
            await stream.close()
        except Exception:
            log.debug("closing an engine stream failed", exc_info=True)

    @staticmethod
    async def _sleep_unless_cancelled(seconds: float, cancel: CancelFlag | None) -> bool:
        """Wait ``seconds``; True (at once) if ``cancel`` is set meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if cancel is not None and cancel.is_set():
                return True
            await asyncio.sleep(min(left, CANCEL_POLL_S))
        return cancel is not None and cancel.is_set()

    def _backoff(self, attempt: int, failure: _Failure) -> float:
        if failure.retry_after_s is not None:
            return failure.retry_after_s
        base = self.engine.backoff_s * 2 ** (attempt - 1)
        return base * random.uniform(0.75, 1.25)  # jitter: retries from many streams spread out

    # ----------------------------------------------------------------- faults

    def _refuse_while_paused(self) -> None:
        retry_in = self._breaker.retry_in()
        if retry_in is not None:
            raise EngineUnavailable(
                f"The generation service at {self.host} is not answering; try again in "
                f"{whole_seconds(retry_in)} s.",
                host=self.host,
                retry_in_s=retry_in,
                model_id=self.spec.model_id,
                reason="not answering",
            )

    def _unavailable(self, failure: _Failure) -> EngineUnavailable:
        retry_in = self._breaker.retry_in() or failure.retry_after_s or self.engine.breaker_pause_s
        sentence = failure.sentence
        if failure.with_wait:
            sentence += f"; try again in {whole_seconds(retry_in)} s."
        log.warning("engine %s: %s", self.host, failure.detail)
        self._health = EngineHealth(
            self.engine.kind,
            self.host,
            "failing",
            detail=sentence,
            first_token_ms=self._health.first_token_ms,
        )
        return EngineUnavailable(
            sentence,
            host=self.host,
            retry_in_s=retry_in if failure.with_wait else None,
            model_id=self.spec.model_id,
            reason=failure.detail,
        )

    async def _classify(self, exc: Exception, *, first_piece_sent: bool) -> _Failure | None:
        """What a failed attempt means; None when it should simply be asked again without
        ``stream_options`` (a server that refuses it)."""
        service = f"The generation service at {self.host}"
        if isinstance(exc, openai.APIConnectionError):  # APITimeoutError is one too
            if isinstance(exc, openai.APITimeoutError):
                cause = type(exc.__cause__).__name__ if exc.__cause__ else "timeout"
                detail = f"timed out ({cause})"
            else:
                cause = repr(exc.__cause__) if exc.__cause__ else "connection error"
                detail = f"connection failed ({cause})"
            return _Failure(
                f"{service} stopped answering in the middle of the reply"
                if first_piece_sent
                else f"{service} is not answering",
                retriable=True,
                engine_fault=True,
                detail=detail,
            )
        if isinstance(exc, openai.APIStatusError):
            return await self._classify_status(exc, service)
        if isinstance(exc, (MalformedReply, ValueError, openai.APIResponseValidationError)):
            return _Failure(
                f"{service} sent a reply the bot cannot read; tell the bot's operator.",
                retriable=False,
                engine_fault=True,
                with_wait=False,
                detail=f"unreadable reply ({type(exc).__name__}: {exc})",
            )
        if isinstance(exc, openai.APIError):  # an error event inside the stream
            return _Failure(
                f"{service} failed while writing the reply",
                retriable=True,
                engine_fault=True,
                detail=f"error event in the stream: {exc.message}",
            )
        raise exc

    async def _classify_status(self, exc: openai.APIStatusError, service: str) -> _Failure | None:
        status = exc.status_code
        detail = f"HTTP {status}: {exc.message}"
        if status == 429:
            return _Failure(
                f"{service} is busy",
                retriable=True,
                engine_fault=False,
                retry_after_s=_retry_after(exc),
                detail=detail,
            )
        if status >= 500:
            return _Failure(
                f"{service} is failing (HTTP {status})",
                retriable=True,
                engine_fault=True,
                detail=detail,
            )
        if status in (401, 403):
            return _Failure(
                f"{service} refused the bot's API key (HTTP {status}); tell the bot's operator.",
                retriable=False,
                engine_fault=False,
                with_wait=False,
                detail=detail,
            )
        if self._ask_usage and "stream_options" in str(exc.message):
            self._ask_usage = False
            log.info("engine %s refuses stream_options; token counts come from chunks", self.host)
            return None
        # A 4xx: is it our model the server does not know, or its API not at this address?
        probe = await self.probe()
        if probe.models is not None and not serves(probe.models, self.spec.model_id):
            sentence = (
                f"{service} does not serve the model {self.spec.name}; tell the bot's operator."
            )
        elif probe.models is None and status == 404:
            sentence = (
                f"{service} has no chat-completions API at the configured address (HTTP 404); "
                "tell the bot's operator."
            )
        else:
            sentence = f"{service} refused the request (HTTP {status})."
        return _Failure(
            sentence, retriable=False, engine_fault=False, with_wait=False, detail=detail
        )

    # ----------------------------------------------------------------- health

    def _answered(self, first_token_ms: float) -> None:
        self._breaker.record_success()
        self._health = EngineHealth(
            self.engine.kind, self.host, "answering", first_token_ms=first_token_ms
        )

    def health(self) -> EngineHealth:
        """How the engine is doing, as the last request or probe saw it."""
        retry_in = self._breaker.retry_in()
        if retry_in is not None:
            return EngineHealth(
                self.engine.kind,
                self.host,
                "paused",
                detail=self._health.detail,
                retry_in_s=retry_in,
                first_token_ms=self._health.first_token_ms,
            )
        return self._health

    async def probe(self) -> EngineProbe:
        """List the server's models (at most :data:`PROBE_TIMEOUT_S`): whether it answers and
        lists this runner's model. A success also closes the circuit breaker."""
        started = time.monotonic()
        timeout = min(PROBE_TIMEOUT_S, self.engine.read_timeout_s)
        try:
            page = await self._client.models.list(
                timeout=openai.Timeout(timeout, connect=min(timeout, self.engine.connect_timeout_s))
            )
            models = tuple(str(getattr(item, "id", "")) for item in page.data)
        except openai.APIStatusError as exc:
            return self._probed(started, None, f"HTTP {exc.status_code} listing models")
        except openai.APITimeoutError:
            return self._probed(started, None, f"no answer in {timeout:g} s")
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            return self._probed(started, None, f"cannot connect ({cause})")
        except (openai.APIError, ValueError, TypeError, AttributeError) as exc:
            return self._probed(started, None, f"unreadable model list ({type(exc).__name__})")
        problem = None
        if not serves(models, self.spec.model_id):
            shown = ", ".join(models[:5]) + (", …" if len(models) > 5 else "") or "none"
            problem = f"does not list the model {self.spec.model_id!r} (it lists: {shown})"
        return self._probed(started, models, problem)

    def _probed(
        self, started: float, models: tuple[str, ...] | None, problem: str | None
    ) -> EngineProbe:
        seconds = time.monotonic() - started
        if models is not None:
            self._breaker.record_success()
        service = f"The generation service at {self.host}"
        if problem is None:
            self._health = EngineHealth(
                self.engine.kind, self.host, "answering", first_token_ms=seconds * 1000
            )
        elif models is None:
            self._health = EngineHealth(
                self.engine.kind, self.host, "failing", detail=f"{service} is not answering."
            )
        else:
            self._health = EngineHealth(
                self.engine.kind,
                self.host,
                "failing",
                detail=f"{service} does not serve the model {self.spec.name}.",
            )
        return EngineProbe(
            self.engine.kind, self.host, self.spec.model_id, models, problem, seconds
        )

    async def aclose(self) -> None:
        """Close the HTTP client (its pooled connections)."""
        await self._client.close()
