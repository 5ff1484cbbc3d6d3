"""The registry's record of one model (loaded or loadable), and which ones to unload for room.

Importing this module does not import torch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from models.batcher import MicroBatcher
from models.errors import ModelError
from models.refs import ModelRef
from models.requests import EncoderRequest
from models.results import ModelState
from models.runners.base import EngineRunner, StreamRunner
from models.specs import ModelSpec
from models.streams import StreamSlots

if TYPE_CHECKING:
    from models.loading import LoadedModel


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
