"""The registry's record of one model (loaded or loadable): its checked reference, its status
as users see it, and which ones to unload for room.

Importing this module does not import torch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.batcher import MicroBatcher
from models.errors import InvalidModelRef, ModelError, ModelFolderMissing
from models.refs import (
    ModelRef,
    is_local_ref,
    resolve_model_ref,
    validate_gguf_file,
    validate_revision,
)
from models.requests import EncoderRequest
from models.results import ModelState, ModelStatus
from models.runners.base import EngineRunner, StreamRunner
from models.specs import ModelSpec
from models.streams import StreamSlots

if TYPE_CHECKING:
    from models.loading import LoadedModel

log = logging.getLogger(__name__)


@dataclass
class ModelHandle:
    """One loaded (or loadable) model shared by every spec with the same key.

    A batched task's model is served by a runner behind a ``batcher``; a streamed task's
    model by a ``streamer`` behind ``slots``. A model on a remote engine also keeps its runner
    as ``remote`` (its health, probe and HTTP client). ``ref`` is None while the reference could not be
    checked (a bad configured one: ``permanent_failure``; a missing folder: looked for again
    when the failure is retried). ``inflight`` counts requests holding the handle.
    """

    spec: ModelSpec
    ref: ModelRef | None
    trusted: bool = False
    state: ModelState = "not loaded"
    error: ModelError | None = None
    permanent_failure: bool = False
    failed_at: float = 0.0  # time.monotonic()
    loaded: LoadedModel | None = None
    batcher: MicroBatcher[EncoderRequest[Any], object] | None = None
    streamer: StreamRunner | None = None
    slots: StreamSlots | None = None
    remote: EngineRunner | None = None
    load_task: asyncio.Task[None] | None = None
    inflight: int = 0
    retired: bool = False
    last_used: float = 0.0  # time.monotonic() of the last request, for least-recently-used

    @property
    def resident(self) -> bool:
        """Loaded, or being loaded (memory in use or about to be)."""
        return self.state in ("ready", "loading")

    def drop_model(self) -> None:
        self.loaded = None
        self.streamer = None
        self.slots = None
        self.state = "not loaded"


def to_unload(resident: Sequence[ModelHandle], cap: int) -> list[ModelHandle] | None:
    """The least recently used idle handles of ``resident`` to unload so that one more model
    fits under ``cap``; None when too many of them are in use (or loading) to make room."""
    excess = len(resident) - cap + 1
    if excess <= 0:
        return []
    idle = sorted(
        (h for h in resident if h.state == "ready" and h.inflight == 0),
        key=lambda h: h.last_used,
    )
    return idle[:excess] if len(idle) >= excess else None


def checked_ref(spec: ModelSpec, allowed_roots: Sequence[Path], *, trusted: bool) -> ModelRef:
    """``spec``'s checked reference, or :class:`InvalidModelRef` naming the model by its name
    (the detailed reason, which may hold paths, goes to the log)."""
    if spec.engine is not None:  # a name on the engine, not a hub id or a folder here
        return ModelRef("engine", spec.engine.base_url)
    try:
        validate_revision(spec.revision)
        validate_gguf_file(spec.gguf_file)
        return resolve_model_ref(spec.model_id, allowed_roots, trusted=trusted)
    except InvalidModelRef as exc:
        log.warning("%s model %s refused: %s", spec.task, spec.model_id, exc)
        if isinstance(exc, ModelFolderMissing):
            raise ModelFolderMissing(f"The folder of the model {spec.name} is missing.") from None
        raise InvalidModelRef(
            f"The model {spec.name} cannot be served: it is not a valid Hugging Face model "
            "id, revision or file, nor a folder this bot may load models from."
        ) from None


def status_of(spec: ModelSpec, handle: ModelHandle | None, guild_id: int | None) -> ModelStatus:
    """What ``/models`` shows of ``spec``, served by ``handle`` (None: never used yet)."""
    state: ModelState = handle.state if handle is not None else "not loaded"
    reason = None
    if handle is not None and handle.state == "failed" and handle.error is not None:
        reason = str(handle.error)
    if handle is not None and handle.ref is not None:
        source = handle.ref.kind
    elif spec.engine is not None:
        source = "engine"
    else:
        source = "local" if is_local_ref(spec.model_id) else "hub"
    load_seconds = handle.loaded.load_seconds if handle and handle.loaded else None
    health = handle.remote.health() if handle is not None and handle.remote else None
    return ModelStatus(
        task=spec.task,
        model_id=spec.model_id,
        name=spec.name,
        source=source,
        state=state,
        reason=reason,
        guild_id=guild_id,
        device=spec.device,
        revision=spec.revision,
        gguf_file=spec.gguf_file,
        description=spec.description,
        load_seconds=load_seconds,
        backend=spec.backend,
        health=health,
    )
