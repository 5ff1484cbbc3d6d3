"""The model registry: lazy loading, per-device execution, batching, per-guild overrides.

Importing this module does not import torch; models load on first use (or :meth:`preload`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from models.batcher import MicroBatcher
from models.errors import (
    InvalidModelRef,
    ModelError,
    ModelLoading,
    ModelUnavailable,
)
from models.executor import DeviceExecutors, configure_torch_threads
from models.refs import (
    ModelRef,
    is_local_ref,
    resolve_model_ref,
    validate_gguf_file,
    validate_revision,
)
from models.requests import (
    ClassifyRequest,
    EncoderRequest,
    GenerationParams,
    GenerationRequest,
    NERRequest,
    QARequest,
)
from models.results import (
    ClassificationResult,
    ModelState,
    ModelStatus,
    NERResult,
    QAResult,
)
from models.runners.base import AnyRunner, CancelFlag, DeviceRun, StreamRunner, process_batch
from models.specs import ModelSpec
from models.streams import GenerationStream, StreamSlots
from models.tasks import Task, task_info, task_of

if TYPE_CHECKING:
    from models.loading import LoadedModel

log = logging.getLogger(__name__)

Loader = Callable[[ModelSpec, ModelRef], "LoadedModel"]
R = TypeVar("R")
T = TypeVar("T")


@dataclass
class _Handle:
    """One loaded (or loadable) model shared by every spec with the same key.

    A batched task's model is served by a runner behind a ``batcher``; a streamed task's
    model by a ``streamer`` behind ``slots``.
    """

    spec: ModelSpec
    ref: ModelRef | None
    state: ModelState = "not loaded"
    error: ModelError | None = None
    permanent_failure: bool = False
    failed_at: float = 0.0
    loaded: LoadedModel | None = None
    batcher: MicroBatcher[EncoderRequest[Any], object] | None = None
    streamer: StreamRunner | None = None
    slots: StreamSlots | None = None
    load_task: asyncio.Task[None] | None = None
    inflight: int = 0
    retired: bool = False

    def drop_model(self) -> None:
        self.loaded = None
        self.streamer = None
        self.state = "not loaded"


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
        for spec in self._defaults.values():
            self._handle(spec, trusted=True)

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
        handle.drop_model()
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
            handle.loaded = loaded
            self._serve(handle, runner)
            handle.state = "ready"
        self._maybe_unload(handle)

    def _load_blocking(
        self, spec: ModelSpec, ref: ModelRef
    ) -> tuple[LoadedModel, AnyRunner | StreamRunner]:
        configure_torch_threads(self.torch_threads)
        from models.loading import load_model

        loaded = (self._loader_fn or load_model)(spec, ref)
        info = task_info(spec.task)
        runner_class = info.runner_class()
        if info.streamed:
            streamer: StreamRunner = runner_class(
                loaded.model, loaded.tokenizer, spec, self._device_runner(spec.device)
            )
            return loaded, streamer
        runner: AnyRunner = runner_class(loaded.model, loaded.tokenizer, spec)
        return loaded, runner

    def _serve(self, handle: _Handle, runner: AnyRunner | StreamRunner) -> None:
        """Put a freshly loaded model's runner behind stream slots or a batcher."""
        spec = handle.spec
        if isinstance(runner, StreamRunner):
            handle.streamer = runner
            handle.slots = StreamSlots(
                spec.model_id, limit=spec.max_batch, queue_depth=spec.queue_depth
            )
            return
        handle.batcher = MicroBatcher(
            lambda requests: process_batch(runner, requests),
            self._device_runner(spec.device),
            name=spec.model_id,
            max_batch=spec.max_batch,
            max_wait_ms=spec.max_wait_ms,
            queue_depth=spec.queue_depth,
            size_of=runner.size_of,
            buckets=spec.length_buckets,
        )

    def _device_runner(self, device: str) -> DeviceRun:
        executors = self._executors

        def run(fn: Callable[[], T]) -> Awaitable[T]:
            return executors.run(device, fn)

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
        if handle is not None and handle.ref is not None:
            source = handle.ref.kind
        else:
            source = "local" if is_local_ref(spec.model_id) else "hub"
        load_seconds = handle.loaded.load_seconds if handle and handle.loaded else None
        return ModelStatus(
            task=spec.task,
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

    async def submit(self, request: EncoderRequest[R], guild_id: int | None = None) -> R:
        """Answer a batched request (any request type in the task table) with the model
        serving its task for ``guild_id``; concurrent requests share batches."""
        task = task_of(request)
        request.validate()
        handle = self._handle(self.spec_for(task, guild_id))
        handle.inflight += 1
        try:
            await self._ensure_loaded(handle)
            assert handle.batcher is not None
            result = await handle.batcher.submit(request)
        finally:
            handle.inflight -= 1
            self._maybe_unload(handle)
        if not isinstance(result, task_info(task).result_type):
            raise TypeError(f"{task} answered with {type(result).__name__}")
        return cast(R, result)

    async def classify(
        self, text: str, guild_id: int | None = None, top_k: int = 1
    ) -> ClassificationResult:
        """Sentiment / text classification: the best label, and the ``top_k`` best."""
        return await self.submit(ClassifyRequest(text, max(1, top_k)), guild_id)

    async def ner(self, text: str, guild_id: int | None = None) -> NERResult:
        """Named entities with character offsets into ``text``."""
        return await self.submit(NERRequest(text), guild_id)

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
        request = QARequest(
            question, context, max(1, top_k), handle_impossible_answer, max_answer_len
        )
        return await self.submit(request, guild_id)

    def generate(
        self,
        prompt: str,
        params: GenerationParams | None = None,
        guild_id: int | None = None,
        cancel: CancelFlag | None = None,
    ) -> GenerationStream:
        """Stream generated text: ``async for piece in registry.generate(...)``; then
        ``stream.stats``. Setting ``cancel`` stops generation at the next token."""
        return self.stream(GenerationRequest.from_prompt(prompt, params), guild_id, cancel)

    def stream(
        self,
        request: GenerationRequest,
        guild_id: int | None = None,
        cancel: CancelFlag | None = None,
    ) -> GenerationStream:
        """Stream the continuation of ``request``'s conversation, as :meth:`generate`."""
        return GenerationStream(lambda stream: self._stream(stream, request, guild_id, cancel))

    async def _stream(
        self,
        stream: GenerationStream,
        request: GenerationRequest,
        guild_id: int | None,
        cancel: CancelFlag | None,
    ) -> AsyncIterator[str]:
        request.validate()
        handle = self._handle(self.spec_for(Task.GENERATION, guild_id))
        handle.inflight += 1
        try:
            await self._ensure_loaded(handle)
            assert handle.streamer is not None and handle.slots is not None
            async with handle.slots.hold():
                inner = handle.streamer.open(request, cancel)
                try:
                    async for piece in inner:
                        yield piece
                    stream.stats = inner.stats
                finally:
                    await inner.aclose()
        finally:
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
            handle.drop_model()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._shutdown_threads)

    def _shutdown_threads(self) -> None:
        self._executors.shutdown(wait=True)
        self._loader.shutdown(wait=True, cancel_futures=True)


def _release_memory(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
