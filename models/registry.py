"""The model registry: lazy loading, per-device execution, batching, per-guild overrides.

Importing this module does not import torch; models load on first use (or :meth:`preload`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from models.batcher import MicroBatcher
from models.errors import (
    InvalidInput,
    InvalidModelRef,
    ModelError,
    ModelLoading,
    ModelUnavailable,
    QueueFull,
)
from models.executor import DeviceExecutors, configure_torch_threads
from models.refs import ModelRef, resolve_model_ref, validate_gguf_file, validate_revision
from models.results import (
    ClassificationResult,
    GenerationStats,
    ModelState,
    ModelStatus,
    NERResult,
    QAResult,
)
from models.specs import GenerationParams, ModelSpec, Task, default_specs

if TYPE_CHECKING:
    from models.loading import LoadedModel

log = logging.getLogger(__name__)

Loader = Callable[[ModelSpec, ModelRef], "LoadedModel"]

# A first guess of one generation's duration, for queue ETAs before any was measured.
_INITIAL_STREAM_S = 10.0


class CancelFlag(Protocol):
    """Anything with ``is_set()``: a ``threading.Event`` or an ``asyncio.Event``."""

    def is_set(self) -> bool: ...


@dataclass
class _Handle:
    """One loaded (or loadable) model shared by every spec with the same key."""

    spec: ModelSpec
    ref: ModelRef | None
    state: ModelState = "not loaded"
    error: ModelError | None = None
    permanent_failure: bool = False
    failed_at: float = 0.0
    loaded: LoadedModel | None = None
    runner: Any = None
    batcher: MicroBatcher[Any, Any] | None = None
    load_task: asyncio.Task[None] | None = None
    inflight: int = 0
    retired: bool = False
    stream_slots: asyncio.Semaphore | None = None
    streams_waiting: int = 0
    stream_s: float = _INITIAL_STREAM_S
    extra: dict[str, Any] = field(default_factory=dict)


class _EitherFlag:
    """Set when the caller's cancel flag or the stream's own stop flag is set."""

    def __init__(self, caller: CancelFlag | None, own: threading.Event) -> None:
        self._caller = caller
        self._own = own

    def is_set(self) -> bool:
        return self._own.is_set() or (self._caller is not None and self._caller.is_set())


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


class ModelRegistry:
    """Serves one model per task (plus per-guild overrides), loading each once, lazily.

    ``specs`` are the default model per task (operator configuration: local folders there are
    trusted); per-guild overrides must be hub ids or folders under ``allowed_roots``. All model
    calls on a device run on that device's single executor thread; loading runs on a separate
    loader thread so a slow load never stalls the models already serving.
    """

    def __init__(
        self,
        specs: Mapping[Task, ModelSpec] | Mapping[str, ModelSpec] | Iterable[ModelSpec],
        *,
        allowed_roots: Sequence[Path | str] = (),
        torch_threads: int | None = None,
        load_wait_s: float = 300.0,
        retry_failed_after_s: float = 30.0,
        loader: Loader | None = None,
    ) -> None:
        items = specs.values() if isinstance(specs, Mapping) else specs
        self._defaults: dict[Task, ModelSpec] = {}
        for spec in items:
            self._defaults[spec.task] = spec
        self.allowed_roots = tuple(Path(root) for root in allowed_roots)
        self.torch_threads = torch_threads
        self.load_wait_s = load_wait_s
        self.retry_failed_after_s = retry_failed_after_s
        self._loader_fn = loader
        self._overrides: dict[tuple[int, Task], ModelSpec] = {}
        self._handles: dict[tuple[Any, ...], _Handle] = {}
        self._executors = DeviceExecutors(torch_threads)
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hfcord-loader")
        self._closed = False
        self.loads = 0
        for spec in self._defaults.values():
            self._handle(spec, trusted=True)

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> ModelRegistry:
        """Build from a ``bot.settings.Settings``-like object (duck-typed: models/ doesn't
        import bot/)."""
        specs = default_specs(
            generation=settings.generation_model,
            generation_gguf_file=settings.generation_gguf_file,
            sentiment=settings.sentiment_model,
            ner=settings.ner_model,
            qa=settings.qa_model,
            device=settings.device,
            max_new_tokens=settings.max_new_tokens,
        )
        kwargs.setdefault("allowed_roots", settings.allowed_model_roots)
        kwargs.setdefault("torch_threads", settings.torch_threads)
        return cls(specs, **kwargs)

    # ----------------------------------------------------------------- specs and handles

    def spec_for(self, task: Task | str, guild_id: int | None = None) -> ModelSpec:
        """The spec serving ``task`` for ``guild_id`` (its override, else the default)."""
        task = Task(task)
        if guild_id is not None:
            override = self._overrides.get((guild_id, task))
            if override is not None:
                return override
        try:
            return self._defaults[task]
        except KeyError:
            raise ModelUnavailable(
                f"No model is configured for {task}.", reason="not configured"
            ) from None

    def _validate(self, spec: ModelSpec, *, trusted: bool) -> ModelRef:
        validate_revision(spec.revision)
        validate_gguf_file(spec.gguf_file)
        return resolve_model_ref(spec.model_id, self.allowed_roots, trusted=trusted)

    def _handle(self, spec: ModelSpec, *, trusted: bool = False) -> _Handle:
        handle = self._handles.get(spec.key)
        if handle is not None:
            handle.retired = False
            return handle
        try:
            ref: ModelRef | None = self._validate(spec, trusted=trusted)
            handle = _Handle(spec=spec, ref=ref)
        except InvalidModelRef as exc:
            # A bad configured model fails its own task only, visibly in /models.
            handle = _Handle(spec=spec, ref=None, state="failed", error=exc, permanent_failure=True)
        self._handles[spec.key] = handle
        return handle

    def _referenced(self, key: tuple[Any, ...]) -> bool:
        return any(spec.key == key for spec in self._defaults.values()) or any(
            spec.key == key for spec in self._overrides.values()
        )

    def _release_if_unused(self, spec: ModelSpec) -> None:
        handle = self._handles.get(spec.key)
        if handle is None or self._referenced(spec.key):
            return
        handle.retired = True
        self._maybe_unload(handle)

    def _maybe_unload(self, handle: _Handle) -> None:
        if not handle.retired or handle.inflight > 0 or handle.state == "loading":
            return
        if self._handles.get(handle.spec.key) is handle:
            del self._handles[handle.spec.key]
        asyncio.get_running_loop().create_task(self._unload(handle))

    async def _unload(self, handle: _Handle) -> None:
        log.info("unloading %s (%s)", handle.spec.model_id, handle.spec.task)
        batcher, handle.batcher = handle.batcher, None
        handle.loaded = None
        handle.runner = None
        handle.state = "not loaded"
        if batcher is not None:
            await batcher.close()
        if not self._closed:
            # Free the weights on the device thread, after anything still queued there.
            await self._executors.run(handle.spec.device, _release_memory, handle.spec.device)

    # ----------------------------------------------------------------- loading

    async def _ensure_loaded(self, handle: _Handle) -> None:
        if self._closed:
            raise ModelUnavailable("The model service is shutting down.", reason="closed")
        if handle.state == "ready":
            return
        loop = asyncio.get_running_loop()
        if handle.state == "failed":
            assert handle.error is not None
            if (
                handle.permanent_failure
                or loop.time() - handle.failed_at < self.retry_failed_after_s
            ):
                raise handle.error
        if handle.load_task is None or handle.load_task.done():
            handle.state = "loading"
            handle.error = None
            handle.load_task = loop.create_task(
                self._load(handle), name=f"load:{handle.spec.model_id}"
            )
        started = loop.time()
        try:
            await asyncio.wait_for(asyncio.shield(handle.load_task), self.load_wait_s)
        except TimeoutError:
            raise ModelLoading(handle.spec.model_id, waited_s=loop.time() - started) from None
        if handle.state != "ready":
            assert handle.error is not None
            raise handle.error

    async def _load(self, handle: _Handle) -> None:
        spec = handle.spec
        assert handle.ref is not None
        loop = asyncio.get_running_loop()
        log.info("loading %s for %s", spec.model_id, spec.task)
        self.loads += 1
        try:
            loaded, runner = await loop.run_in_executor(
                self._loader, self._load_blocking, spec, handle.ref
            )
        except ModelError as exc:
            handle.state, handle.error, handle.failed_at = "failed", exc, loop.time()
            log.warning("model %s failed to load: %s", spec.model_id, exc)
        except Exception as exc:
            log.exception("model %s failed to load", spec.model_id)
            handle.state, handle.failed_at = "failed", loop.time()
            handle.error = ModelUnavailable(
                f"The model {spec.model_id} failed to load ({type(exc).__name__}); "
                "see the bot's log.",
                model_id=spec.model_id,
                reason=f"{type(exc).__name__}: {exc}"[:200],
            )
        else:
            handle.loaded, handle.runner = loaded, runner
            if runner is not None:
                handle.batcher = MicroBatcher(
                    runner.process,
                    self._device_runner(spec.device),
                    name=spec.model_id,
                    max_batch=spec.max_batch,
                    max_wait_ms=spec.max_wait_ms,
                    queue_depth=spec.queue_depth,
                    size_of=runner.size_of,
                    buckets=spec.length_buckets,
                )
            else:
                handle.stream_slots = asyncio.Semaphore(spec.max_batch)
            handle.state = "ready"
        self._maybe_unload(handle)

    def _load_blocking(self, spec: ModelSpec, ref: ModelRef) -> tuple[LoadedModel, Any]:
        configure_torch_threads(self.torch_threads)
        from models.loading import load_model

        loaded = (self._loader_fn or load_model)(spec, ref)
        return loaded, _build_runner(loaded)

    def _device_runner(self, device: str) -> Callable[[Callable[[], Any]], Any]:
        def run(fn: Callable[[], Any]) -> Any:
            return self._executors.run(device, fn)

        return run

    async def preload(self, tasks: Iterable[Task | str] | None = None) -> list[ModelStatus]:
        """Load the default models for ``tasks`` (all by default) now; failures are recorded
        in the statuses, not raised."""
        wanted = [Task(t) for t in tasks] if tasks is not None else list(self._defaults)
        handles = [self._handle(self.spec_for(task), trusted=True) for task in wanted]
        await asyncio.gather(*(self._ensure_loaded(h) for h in handles), return_exceptions=True)
        return [self.status(task) for task in wanted]

    # ----------------------------------------------------------------- status

    def _status_of(self, spec: ModelSpec, guild_id: int | None) -> ModelStatus:
        handle = self._handles.get(spec.key)
        state: ModelState = handle.state if handle is not None else "not loaded"
        reason = None
        if handle is not None and handle.state == "failed" and handle.error is not None:
            reason = str(handle.error)
        source = handle.ref.kind if handle is not None and handle.ref is not None else "hub"
        if handle is None or handle.ref is None:
            source = "local" if spec.model_id.startswith(("/", ".", "~")) else "hub"
        load_seconds = handle.loaded.load_seconds if handle and handle.loaded else None
        return ModelStatus(
            task=str(spec.task),
            model_id=spec.model_id,
            source=source,
            state=state,
            reason=reason,
            guild_id=guild_id,
            device=spec.device,
            revision=spec.revision,
            gguf_file=spec.gguf_file,
            description=spec.description,
            load_seconds=load_seconds,
        )

    def status(self, task: Task | str, guild_id: int | None = None) -> ModelStatus:
        """The state of the model serving ``task`` for ``guild_id``."""
        task = Task(task)
        spec = self.spec_for(task, guild_id)
        is_override = guild_id is not None and (guild_id, task) in self._overrides
        return self._status_of(spec, guild_id if is_override else None)

    def statuses(self, guild_id: int | None = None) -> list[ModelStatus]:
        """Every task's default model, then ``guild_id``'s overrides (``guild_id`` set)."""
        result = [self._status_of(spec, None) for spec in self._defaults.values()]
        if guild_id is not None:
            result.extend(
                self._status_of(spec, guild_id)
                for (gid, _), spec in self._overrides.items()
                if gid == guild_id
            )
        return result

    # ----------------------------------------------------------------- overrides

    def guild_overrides(self, guild_id: int) -> dict[Task, ModelSpec]:
        return {task: spec for (gid, task), spec in self._overrides.items() if gid == guild_id}

    async def set_guild_override(
        self,
        guild_id: int,
        task: Task | str,
        spec: ModelSpec | str,
        *,
        preload: bool = True,
    ) -> ModelSpec:
        """Serve ``spec`` (or a model ref on the task's default limits) for ``guild_id``.

        With ``preload`` the new model is loaded first and the swap happens only if it loads
        (raising :class:`ModelUnavailable` otherwise, the old model still serving). Requests
        already running finish on the old model, which is unloaded once nothing uses it.
        Raises :class:`InvalidModelRef` for refs outside the allowed roots.
        """
        task = Task(task)
        if isinstance(spec, str):
            spec = self.spec_for(task).with_model(spec)
        if spec.task != task:
            raise ValueError(f"spec is for {spec.task}, not {task}")
        self._validate(spec, trusted=False)
        handle = self._handle(spec)
        if preload:
            handle.inflight += 1
            try:
                await self._ensure_loaded(handle)
            finally:
                handle.inflight -= 1
        old = self._overrides.get((guild_id, task))
        self._overrides[(guild_id, task)] = spec
        log.info("guild %s now uses %s for %s", guild_id, spec.model_id, task)
        if old is not None and old.key != spec.key:
            self._release_if_unused(old)
        if not preload and self._handles.get(spec.key) is handle:
            self._maybe_unload(handle)
        return spec

    async def clear_guild_override(self, guild_id: int, task: Task | str) -> None:
        """Go back to the default model for ``task`` in ``guild_id``."""
        old = self._overrides.pop((guild_id, Task(task)), None)
        if old is not None:
            self._release_if_unused(old)

    # ----------------------------------------------------------------- requests

    async def _submit(self, task: Task, guild_id: int | None, item: Any) -> Any:
        handle = self._handle(self.spec_for(task, guild_id))
        handle.inflight += 1
        try:
            await self._ensure_loaded(handle)
            assert handle.batcher is not None
            return await handle.batcher.submit(item)
        finally:
            handle.inflight -= 1
            self._maybe_unload(handle)

    async def classify(
        self, text: str, guild_id: int | None = None, top_k: int = 1
    ) -> ClassificationResult:
        """Sentiment / text classification: the best label, and the ``top_k`` best."""
        from models.runners import ClassifyRequest

        if not text or not text.strip():
            raise InvalidInput("The text is empty; give some text to analyse.")
        result: ClassificationResult = await self._submit(
            Task.SENTIMENT, guild_id, ClassifyRequest(text, max(1, top_k))
        )
        return result

    async def ner(self, text: str, guild_id: int | None = None) -> NERResult:
        """Named entities with character offsets into ``text``."""
        if not text or not text.strip():
            raise InvalidInput("The text is empty; give some text to analyse.")
        result: NERResult = await self._submit(Task.NER, guild_id, text)
        return result

    async def answer(
        self,
        question: str,
        context: str,
        guild_id: int | None = None,
        top_k: int = 1,
        *,
        handle_impossible_answer: bool = False,
        max_answer_len: int | None = None,
    ) -> QAResult:
        """Extractive QA over ``context`` (any length: it is windowed)."""
        from models.runners import QARequest

        if not question or not question.strip():
            raise InvalidInput("The question is empty; ask something.")
        if not context or not context.strip():
            raise InvalidInput("The context is empty; there is nothing to search for an answer.")
        result: QAResult = await self._submit(
            Task.QA,
            guild_id,
            QARequest(question, context, max(1, top_k), handle_impossible_answer, max_answer_len),
        )
        return result

    def generate(
        self,
        prompt: str,
        params: GenerationParams | None = None,
        guild_id: int | None = None,
        cancel: CancelFlag | None = None,
    ) -> GenerationStream:
        """Stream generated text: ``async for piece in registry.generate(...)``; then
        ``stream.stats``. Setting ``cancel`` stops generation at the next token."""
        params = params or GenerationParams()
        return GenerationStream(
            lambda stream: self._stream(stream, prompt, params, guild_id, cancel)
        )

    async def _stream(
        self,
        stream: GenerationStream,
        prompt: str,
        params: GenerationParams,
        guild_id: int | None,
        cancel: CancelFlag | None,
    ) -> AsyncIterator[str]:
        from models.generation import GenerationSession

        if not prompt or not prompt.strip():
            raise InvalidInput("The prompt is empty; write something to continue.")
        handle = self._handle(self.spec_for(Task.GENERATION, guild_id))
        handle.inflight += 1
        stop = threading.Event()
        acquired = False
        job: asyncio.Future[str] | None = None
        getter: asyncio.Future[str] | None = None
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await self._ensure_loaded(handle)
            spec, loaded, slots = handle.spec, handle.loaded, handle.stream_slots
            assert loaded is not None and slots is not None
            if slots.locked() and handle.streams_waiting >= spec.queue_depth:
                position = handle.streams_waiting + 1
                raise QueueFull(
                    spec.model_id,
                    position=position,
                    eta_s=position * handle.stream_s / spec.max_batch,
                )
            handle.streams_waiting += 1
            try:
                await slots.acquire()
            finally:
                handle.streams_waiting -= 1
            acquired = True
            started = loop.time()
            session = await self._executors.run(
                spec.device,
                lambda: GenerationSession(
                    loaded.model,
                    loaded.tokenizer,
                    prompt,
                    params.clamped(spec.max_new_tokens),
                    model_id=spec.model_id,
                    cancel=_EitherFlag(cancel, stop),
                ),
            )
            pieces: asyncio.Queue[str] = asyncio.Queue()

            def emit(piece: str) -> None:
                loop.call_soon_threadsafe(pieces.put_nowait, piece)

            while not session.done:
                job = asyncio.ensure_future(
                    self._executors.run(
                        spec.device, session.step, spec.generation_chunk_tokens, emit
                    )
                )
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
            if acquired:
                assert handle.stream_slots is not None
                handle.stream_slots.release()
                handle.stream_s = 0.8 * handle.stream_s + 0.2 * (loop.time() - started)
            handle.inflight -= 1
            self._maybe_unload(handle)

    # ----------------------------------------------------------------- shutdown

    async def close(self) -> None:
        """Fail waiting requests, stop the worker threads and drop every model."""
        if self._closed:
            return
        self._closed = True
        handles = list(self._handles.values())
        self._handles.clear()
        for handle in handles:
            if handle.batcher is not None:
                await handle.batcher.close()
            handle.loaded = None
            handle.runner = None
            handle.state = "not loaded"
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._shutdown_threads)

    def _shutdown_threads(self) -> None:
        self._executors.shutdown(wait=True)
        self._loader.shutdown(wait=True, cancel_futures=True)


def _build_runner(loaded: LoadedModel) -> Any:
    from models import runners

    task = loaded.spec.task
    if task is Task.GENERATION:
        return None
    cls = {
        Task.SENTIMENT: runners.ClassificationRunner,
        Task.NER: runners.TokenClassificationRunner,
        Task.QA: runners.QuestionAnsweringRunner,
    }[task]
    return cls(loaded.model, loaded.tokenizer, loaded.spec)


def _release_memory(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
