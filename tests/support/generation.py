"""Driving a :class:`~models.continuous.ContinuousDecoder` step by step on the test's thread.

The registry runs the decoder on a device thread in jobs of a few steps; these helpers take one
step at a time so a test decides exactly when each stream joins or stops.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from models.continuous import ContinuousDecoder, Ticket
from models.requests import GenerationParams, GenerationRequest
from models.results import GenerationStats


def greedy(prompt: str, max_new_tokens: int) -> GenerationRequest:
    """``prompt`` decoded greedily for ``max_new_tokens`` (params already clamped)."""
    params = GenerationParams(temperature=0.0, repetition_penalty=1.0)
    return GenerationRequest.from_prompt(
        prompt, params.clamped(max_new_tokens) if max_new_tokens else params
    )


@dataclass
class Outcome:
    """What one stream produced: its pieces, and its stats or error once it ended."""

    pieces: list[str] = field(default_factory=list)
    end: GenerationStats | BaseException | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def stats(self) -> GenerationStats:
        assert isinstance(self.end, GenerationStats), self.end
        return self.end

    def ended(self, outcome: GenerationStats | BaseException) -> None:
        assert self.end is None, "a stream ended twice"
        self.end = outcome


def submit(decoder: ContinuousDecoder, request: GenerationRequest) -> Outcome:
    """Queue ``request``; its outcome fills in as the decoder steps."""
    outcome = Outcome()
    decoder.submit(Ticket(request, outcome.stop, outcome.pieces.append, outcome.ended))
    return outcome


def run_schedule(
    model: Any,
    tokenizer: Any,
    schedule: Sequence[tuple[int, GenerationRequest]],
    *,
    stops: Sequence[tuple[int, int]] = (),
) -> tuple[list[Outcome], ContinuousDecoder]:
    """Each ``(step, request)`` of ``schedule`` joins before that step; each ``(step, i)`` of
    ``stops`` stops stream ``i`` before that step. Runs until every stream has ended."""
    decoder = ContinuousDecoder(model, tokenizer, model_id="tiny", model_name="tiny")
    outcomes: list[Outcome | None] = [None] * len(schedule)
    step = 0
    last_join = max(at for at, _ in schedule)
    while step <= last_join or decoder.busy:
        for i, (at, request) in enumerate(schedule):
            if at == step:
                outcomes[i] = submit(decoder, request)
        for at, i in stops:
            if at == step:
                found = outcomes[i]
                assert found is not None
                found.stop.set()
        decoder.run(1)
        step += 1
    assert all(o is not None and o.end is not None for o in outcomes)
    return [o for o in outcomes if o is not None], decoder


def alone(model: Any, tokenizer: Any, request: GenerationRequest) -> GenerationStats:
    """``request`` generated as the only stream."""
    (outcome,), _ = run_schedule(model, tokenizer, [(0, request)])
    return outcome.stats
