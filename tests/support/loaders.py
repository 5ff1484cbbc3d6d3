"""A model loader for registry tests: the real one, counted, optionally slowed down."""

from __future__ import annotations

import time
from typing import Any

from models.loading import LoadedModel, load_model
from models.refs import ModelRef
from models.specs import ModelSpec


class CountingLoader:
    """Wraps the real loader: counts loads, can delay them and slow a model's forward pass
    (counting the slowed passes as they start)."""

    def __init__(self, delay_s: float = 0.0, slow_forward: dict[str, float] | None = None) -> None:
        self.calls: list[str] = []
        self.delay_s = delay_s
        self.slow_forward = slow_forward or {}
        self.forwards: dict[str, int] = {}

    def __call__(self, spec: ModelSpec, ref: ModelRef) -> LoadedModel:
        self.calls.append(spec.model_id)
        time.sleep(self.delay_s)
        loaded = load_model(spec, ref)
        pause = self.slow_forward.get(spec.model_id)
        if pause:
            forward = loaded.model.forward

            def slow(*args: Any, **kwargs: Any) -> Any:
                self.forwards[spec.model_id] = self.forwards.get(spec.model_id, 0) + 1
                time.sleep(pause)
                return forward(*args, **kwargs)

            loaded.model.forward = slow
        return loaded
