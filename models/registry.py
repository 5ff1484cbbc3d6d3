"""The model registry: lazy loading, per-device execution, batching, per-guild overrides.

(Past 600 lines: loading, overrides, engines, requests and statuses all work on the one table of
model handles this class owns; splitting them would hand that table around.)

Importing this module does not import torch; models load on first use (or :meth:`preload`).

A spec with an engine (``ModelSpec.engine``) is served by the task's remote runner for that
engine's kind (models.tasks), built from the spec alone when the registry first needs it: no
model loads here, and ``statuses`` carry the engine's health; :meth:`probe_engines` asks each
engine now.

Servers' own models (per-guild overrides) are untrusted input as far as the host is concerned:
at most ``max_resident_overrides`` of them stay loaded (the least recently used idle one is
unloaded to make room, and reloaded on demand), and one whose folder disappeared or no longer
loads falls back to the task's default model for that server's requests, visibly in
:meth:`statuses`. Errors name models by ``ModelSpec.name``; paths and raw exception text go to
the log only.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from models.background import BackgroundTasks, log_failures
from models.batcher import MicroBatcher
from models.engines import EngineProbe
from models.errors import (
    InvalidModelRef,
    ModelError,
    ModelFolderMissing,
    ModelLoading,
    ModelsBusy,
    ModelUnavailable,
)
from models.executor import CallThreads, DeviceExecutors, configure_torch_threads
from models.handles import ModelHandle, checked_ref, status_of, to_unload
from models.prompts import PromptCounter, counter_for
from models.refs import (
    ModelRef,
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
    ModelStatus,
    NERResult,
    QAResult,
)
from models.runners.base import (
    AnyRunner,
    CancelFlag,
    DeviceRun,
    EngineRunner,
    StreamRunner,
    batch_steps,
)
from models.specs import ModelSpec
from models.streams import GenerationStream, StreamSlots
from models.tasks import Task, task_info, task_of

if TYPE_CHECKING:
    from models.loading import LoadedModel

log = logging.getLogger(__name__)

Loader = Callable[[ModelSpec, ModelRef], "LoadedModel"]
R = TypeVar("R")
T = TypeVar("T")


class ModelRegistry:
    """Serves one model per task (plus per-guild overrides), loading each once, lazily.

    ``specs`` are the default model per task (operator configuration: local folders there are
    trusted); per-guild overrides must be hub ids or folders under ``allowed_roots``. All model
    calls on a device run on that device's single executor thread, a batch one forward pass per
    job so other models' work interleaves; loading runs on a separate loader thread so a slow
    load never stalls the models already serving. ``max_resident_overrides`` (None: no limit)
    caps how many per-guild override models are loaded at once.
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
        max_resident_overrides: int | None = None,
    ) -> None:
        if max_resident_overrides is not None and max_resident_overrides < 1:
            raise ValueError("max_resident_overrides must be at least 1 (or None)")
        items = specs.values() if isinstance(specs, Mapping) else specs
        self._defaults: dict[Task, ModelSpec] = {}
        for spec in items:
            self._defaults[spec.task] = spec
        self.allowed_roots = tuple(Path(root) for root in allowed_roots)
        self.torch_threads = torch_threads
        self.load_wait_s = load_wait_s
        self.retry_failed_after_s = retry_failed_after_s
        self._loader_fn = loader
        self.max_resident_overrides = max_resident_overrides
        self._overrides: dict[tuple[int, Task], ModelSpec] = {}
        self._handles: dict[tuple[Any, ...], ModelHandle] = {}
        self._executors = DeviceExecutors(torch_threads)
        self._loader = CallThreads("hfcord-loader")  # a thread per load, see CallThreads
        self._background = BackgroundTasks()  # unloads
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
        return checked_ref(spec, self.allowed_roots, trusted=trusted)

    def _is_default(self, key: tuple[Any, ...]) -> bool:
        return any(spec.key == key for spec in self._defaults.values())

    def _handle(self, spec: ModelSpec, *, trusted: bool | None = None) -> ModelHandle:
        handle = self._handles.get(spec.key)
        if handle is not None:
            handle.retired = False
            return handle
        trusted = self._is_default(spec.key) if trusted is None else trusted
        try:
            ref: ModelRef | None = self._validate(spec, trusted=trusted)
            handle = ModelHandle(spec=spec, ref=ref, trusted=trusted)
        except ModelFolderMissing as exc:
            # e.g. a promoted model restored at start after its folder was removed: the
            # default serves meanwhile; the folder is looked for again on a later request.
            handle = ModelHandle(
                spec=spec,
                ref=None,
                trusted=trusted,
                state="failed",
                error=exc,
                failed_at=time.monotonic(),
            )
        except InvalidModelRef as exc:
            # A bad configured model fails its own task only, visibly in /models.
            handle = ModelHandle(
                spec=spec,
                ref=None,
                trusted=trusted,
                state="failed",
                error=exc,
                permanent_failure=True,
            )
        self._handles[spec.key] = handle
        if spec.engine is not None and handle.state == "not loaded":
            self._connect(handle)
        return handle

    def _connect(self, handle: ModelHandle) -> None:
        """Serve an engine's model: build the task's remote runner from the spec (its HTTP
        client connects on first use); nothing loads, so the model is ready at once."""
        spec = handle.spec
        try:
            runner = task_info(spec.task).runner_class(spec.backend)(spec)
        except Exception as exc:
            log.exception("no %s runner for %s", spec.backend, spec.task)
            handle.state, handle.permanent_failure = "failed", True
            handle.error = ModelUnavailable(
                f"The model {spec.name} cannot be served by a {spec.backend} engine "
                f"({type(exc).__name__}); see the bot's log.",
                model_id=spec.model_id,
                reason=f"no {spec.backend} runner",
            )
            return
        self._serve(handle, runner)
        handle.state = "ready"

    def _referenced(self, key: tuple[Any, ...]) -> bool:
        return self._is_default(key) or any(spec.key == key for spec in self._overrides.values())

    def _release_if_unused(self, spec: ModelSpec) -> None:
        handle = self._handles.get(spec.key)
        if handle is None or self._referenced(spec.key):
            return
        handle.retired = True
        self._maybe_unload(handle)

    def _maybe_unload(self, handle: ModelHandle) -> None:
        if not handle.retired or handle.inflight > 0 or handle.state == "loading":
            return
        if self._handles.get(handle.spec.key) is handle:
            del self._handles[handle.spec.key]
        self._drop(handle, why="no longer used")

    def _drop(self, handle: ModelHandle, *, why: str) -> None:
        """Unload ``handle``'s model now; its memory is freed in the background."""
        log.info("unloading %s (%s): %s", handle.spec.model_id, handle.spec.task, why)
        batcher, handle.batcher = handle.batcher, None
        remote, handle.remote = handle.remote, None
        handle.drop_model()
        self._background.spawn(
            self._release(batcher, handle.spec.device, remote), name=f"unload:{handle.spec.name}"
        )

    async def _release(
        self,
        batcher: MicroBatcher[Any, Any] | None,
        device: str,
        remote: EngineRunner | None = None,
    ) -> None:
        if batcher is not None:
            await batcher.close()
        if remote is not None:
            await remote.aclose()
        elif not self._closed:
            # Free the weights on the device thread, after anything still queued there.
            await self._executors.run(device, _release_memory, device)

    def _make_room(self, loading: ModelHandle) -> None:
        """Before a per-guild override model loads: unload the least recently used idle ones
        so at most ``max_resident_overrides`` are loaded; :class:`ModelsBusy` if all are busy."""
        cap = self.max_resident_overrides
        if cap is None or self._is_default(loading.spec.key):
            return
        resident = [
            h
            for h in self._handles.values()
            if h is not loading and h.resident and not self._is_default(h.spec.key)
        ]
        victims = to_unload(resident, cap)
        if victims is None:
            raise ModelsBusy(
                f"This bot already has as many servers' own models loaded as it can hold "
                f"({cap}), all of them answering requests; try again in a minute."
            )
        for victim in victims:
            self._drop(victim, why=f"least recently used of {cap} servers' own models")

    # ----------------------------------------------------------------- loading

    async def _ensure_loaded(self, handle: ModelHandle) -> None:
        if self._closed:
            raise ModelUnavailable("The model service is shutting down.", reason="closed")
        if handle.spec.engine is not None and handle.state == "not loaded":
            self._connect(handle)  # unloaded to make room earlier: connect again
        if handle.state == "ready":
            return
        loop = asyncio.get_running_loop()
        if handle.state == "failed":
            assert handle.error is not None
            if (
                handle.permanent_failure
                or time.monotonic() - handle.failed_at < self.retry_failed_after_s
            ):
                raise handle.error
        if handle.load_task is None or handle.load_task.done():
            self._make_room(handle)
            handle.state = "loading"
            handle.error = None
            handle.load_task = log_failures(
                loop.create_task(self._load(handle), name=f"load:{handle.spec.name}")
            )
        started = loop.time()
        try:
            await asyncio.wait_for(asyncio.shield(handle.load_task), self.load_wait_s)
        except TimeoutError:
            raise ModelLoading(
                handle.spec.model_id, waited_s=loop.time() - started, name=handle.spec.name
            ) from None
        if handle.state != "ready":
            assert handle.error is not None
            raise handle.error

    async def _load(self, handle: ModelHandle) -> None:
        spec = handle.spec
        log.info("loading %s for %s", spec.model_id, spec.task)
        try:
            ref, loaded, runner = await self._loader.run(
                self._load_blocking, spec, handle.ref, handle.trusted
            )
        except ModelError as exc:
            handle.state, handle.error, handle.failed_at = "failed", exc, time.monotonic()
            log.warning("model %s failed to load: %s", spec.model_id, exc)
        except Exception as exc:
            log.exception("model %s failed to load", spec.model_id)
            handle.state, handle.failed_at = "failed", time.monotonic()
            handle.error = ModelUnavailable(
                f"The model {spec.name} failed to load ({type(exc).__name__}); see the bot's log.",
                model_id=spec.model_id,
                reason=f"failed to load ({type(exc).__name__})",
            )
        else:
            handle.ref = ref
            handle.loaded = loaded
            self._serve(handle, runner)
            handle.state = "ready"
            handle.last_used = time.monotonic()
        self._maybe_unload(handle)

    def _load_blocking(
        self, spec: ModelSpec, ref: ModelRef | None, trusted: bool
    ) -> tuple[ModelRef, LoadedModel, AnyRunner | StreamRunner]:
        if ref is None:  # its folder was missing before: look again
            ref = self._validate(spec, trusted=trusted)
        configure_torch_threads(self.torch_threads)
        from models.loading import load_model

        loaded = (self._loader_fn or load_model)(spec, ref)
        info = task_info(spec.task)
        runner_class = info.runner_class()
        if info.streamed:
            streamer: StreamRunner = runner_class(
                loaded.model, loaded.tokenizer, spec, self._device_runner(spec.device)
            )
            return ref, loaded, streamer
        runner: AnyRunner = runner_class(loaded.model, loaded.tokenizer, spec)
        return ref, loaded, runner

    def _serve(self, handle: ModelHandle, runner: AnyRunner | StreamRunner) -> None:
        """Put a freshly loaded model's runner behind stream slots or a batcher."""
        spec = handle.spec
        if isinstance(runner, EngineRunner):
            handle.remote = runner
        if isinstance(runner, StreamRunner):
            handle.streamer = runner
            handle.slots = StreamSlots(
                spec.name, limit=spec.max_batch, queue_depth=spec.queue_depth
            )
            return
        handle.batcher = MicroBatcher(
            # One forward pass per device job: other models' work runs between passes.
            lambda requests: batch_steps(runner, requests, spec.forward_batch),
            # A remote batched runner blocks on its engine: on a thread of its own, not a device's.
            self._device_runner(
                spec.device if spec.engine is None else f"engine:{spec.engine.host}"
            ),
            name=spec.name,
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

    async def run_on_device(self, fn: Callable[[], T], device: str = "cpu") -> T:
        """Run ``fn()`` on ``device``'s thread, between model calls. For benchmarks that compare
        a bare model with the registry: torch work on a lasting thread of their own would keep
        a second OpenMP team beside the device thread's (see ``models.executor.CallThreads``)."""
        return await self._executors.run(device, fn)

    async def preload(self, tasks: Iterable[Task | str] | None = None) -> list[ModelStatus]:
        """Load the default models for ``tasks`` (all by default) now; failures are recorded
        in the statuses, not raised."""
        wanted = [Task(t) for t in tasks] if tasks is not None else list(self._defaults)
        handles = [self._handle(self.spec_for(task), trusted=True) for task in wanted]
        await asyncio.gather(*(self._ensure_loaded(h) for h in handles), return_exceptions=True)
        return [self.status(task) for task in wanted]

    # ----------------------------------------------------------------- status

    def _status_of(self, spec: ModelSpec, guild_id: int | None) -> ModelStatus:
        return status_of(spec, self._handles.get(spec.key), guild_id)

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

    async def probe_engines(self, guild_id: int | None = None) -> list[EngineProbe]:
        """Ask every engine serving a task (for ``guild_id``) now whether it answers and serves
        its model, all at once; the answers also refresh :meth:`statuses`' health."""
        specs = {spec.key: spec for spec in self._defaults.values()}
        if guild_id is not None:
            for (gid, _), spec in self._overrides.items():
                if gid == guild_id:
                    specs[spec.key] = spec
        remotes = [
            handle.remote
            for spec in specs.values()
            if spec.engine is not None and (handle := self._handle(spec)).remote is not None
        ]
        return list(await asyncio.gather(*(remote.probe() for remote in remotes)))

    # ----------------------------------------------------------------- overrides

    async def set_guild_override(
        self,
        guild_id: int,
        task: Task | str,
        spec: ModelSpec | str,
        *,
        preload: bool = True,
        display_name: str | None = None,
    ) -> ModelSpec:
        """Serve ``spec`` (or a model ref on the task's default limits) for ``guild_id``.

        ``display_name`` is what users see for it (e.g. "fine-tuned job #12"; default: the
        folder's name or the hub id). With ``preload`` the new model is loaded first and the
        swap happens only if it loads (raising :class:`ModelUnavailable` otherwise, the old
        model still serving). Requests already running finish on the old model, which is
        unloaded once nothing uses it. Raises :class:`InvalidModelRef` for refs outside the
        allowed roots. Without ``preload`` (restoring at start) a missing folder is accepted:
        the server's requests use the default model until it is back, as :meth:`statuses` says.
        """
        task = Task(task)
        if isinstance(spec, str):
            spec = self.spec_for(task).with_model(spec, display_name=display_name)
        elif display_name is not None:
            spec = replace(spec, display_name=display_name)
        if spec.task != task:
            raise ValueError(f"spec is for {spec.task}, not {task}")
        try:
            self._validate(spec, trusted=False)
        except ModelFolderMissing:
            if preload:
                raise
        handle = self._handle(spec, trusted=False)
        if preload:
            handle.inflight += 1
            try:
                await self._ensure_loaded(handle)
            finally:
                handle.inflight -= 1
        old = self._overrides.get((guild_id, task))
        self._overrides[(guild_id, task)] = spec
        log.info("guild %s now uses %s (%s) for %s", guild_id, spec.model_id, spec.name, task)
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

    @asynccontextmanager
    async def _serving(self, task: Task, guild_id: int | None) -> AsyncIterator[ModelHandle]:
        """The loaded model serving ``task`` for ``guild_id``, held (in flight) in the block.

        A per-guild override that cannot be served (its folder vanished, its files no longer
        load) falls back to the task's default model; :meth:`statuses` shows the failure.
        """
        spec = self.spec_for(task, guild_id)
        handle = self._handle(spec)
        handle.inflight += 1
        try:
            try:
                await self._ensure_loaded(handle)
            except (ModelUnavailable, InvalidModelRef) as exc:
                default = self._defaults.get(task)
                if default is None or default.key == spec.key or self._closed:
                    raise
                # The failure itself was logged when the model failed to load.
                log.debug(
                    "guild %s: %s for %s cannot be served (%s); the default model answers",
                    guild_id,
                    spec.model_id,
                    task,
                    exc,
                )
                handle.inflight -= 1
                self._maybe_unload(handle)
                handle = self._handle(default)
                handle.inflight += 1
                await self._ensure_loaded(handle)
            handle.last_used = time.monotonic()
            yield handle
        finally:
            handle.inflight -= 1
            self._maybe_unload(handle)

    async def submit(self, request: EncoderRequest[R], guild_id: int | None = None) -> R:
        """Answer a batched request (any request type in the task table) with the model
        serving its task for ``guild_id``; concurrent requests share batches."""
        task = task_of(request)
        request.validate()
        async with self._serving(task, guild_id) as handle:
            assert handle.batcher is not None
            result = await handle.batcher.submit(request)
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
        async with self._serving(Task.GENERATION, guild_id) as handle:
            streamer, slots = handle.streamer, handle.slots
            assert streamer is not None and slots is not None
            async with slots.hold():
                inner = streamer.open(request, cancel)
                try:
                    async for piece in inner:
                        yield piece
                    stream.stats = inner.stats
                finally:
                    await inner.aclose()

    async def prompt_counter(self, guild_id: int | None = None) -> PromptCounter:
        """Counts prompts for the generation model serving ``guild_id`` as that model sees them
        (its tokenizer and chat template; an estimate for one that cannot say), with its
        context window (see :mod:`models.prompts`). Loads the model as a request would."""
        async with self._serving(Task.GENERATION, guild_id) as handle:
            run = self._device_runner(handle.spec.device)
            return await counter_for(handle.streamer, handle.loaded, run)

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
            if handle.remote is not None:
                await handle.remote.aclose()
                handle.remote = None
            handle.drop_model()
        await self._background.wait()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._shutdown_threads)

    def _shutdown_threads(self) -> None:
        self._executors.shutdown(wait=True)
        self._loader.shutdown(wait=True)


def _release_memory(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
