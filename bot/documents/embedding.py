"""What the documents index needs from an embedding model, and the registry serving one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from models.errors import QueueFull
from models.requests import EmbedRequest
from models.tasks import Task

if TYPE_CHECKING:
    from models.registry import ModelRegistry

log = logging.getLogger(__name__)


class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors (bytes), one per text, in order."""

    @property
    def model_key(self) -> str:
        """Names the model: stored vectors from another key are embedded again."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[bytes]: ...


class RegistryEmbedder:
    """The registry's embedding model (the default one: vectors of all servers must agree)."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    @property
    def model_key(self) -> str:
        spec = self.registry.spec_for(Task.EMBEDDING)
        return spec.model_id + (f"@{spec.revision}" if spec.revision else "")

    async def embed(self, texts: Sequence[str]) -> list[bytes]:
        """Vectors for ``texts``; a full queue is waited out (indexing is never urgent)."""
        request = EmbedRequest(tuple(texts))
        while True:
            try:
                result = await self.registry.submit(request)
            except QueueFull as exc:
                log.debug("embedding queue full; retrying in %.1f s", exc.eta_s)
                await asyncio.sleep(min(max(exc.eta_s, 0.05), 1.0))
            else:
                return list(result.vectors)
