"""The two runner interfaces the registry serves models through (no torch import here).

A batched task's :class:`Runner` splits a batch the way transformers' pipelines do
(preprocess -> _forward -> postprocess): :meth:`~Runner.prepare` turns one request into model
inputs (tokenizing; a bad request fails alone) made of one or more rows (:meth:`~Runner.rows`:
a long text or context has one per window), :meth:`~Runner.forward` runs the model over one
padded pass of rows (the only call into the model, and the hot path: another runtime, such as
ONNX Runtime, replaces this method alone), and :meth:`~Runner.finish` turns one request's row
outputs into its plain result (never tensors).

:func:`batch_steps` composes them into the batch function the
:class:`~models.batcher.MicroBatcher` runs on the device thread, as a generator: preparing is
one step and each forward pass (rows of similar length, across the batch's requests) another,
so the batcher runs every step as its own device job and other models' jobs run in between. A
long request (a question over a 100,000-character context) then delays the others by one pass,
not by all of its passes. :func:`process_batch` runs the same steps at once.

A streamed task's :class:`StreamRunner` opens one stream per request: the local implementation
generates on the device thread a few tokens at a time; the remote one
(:mod:`models.runners.openai_chat`) reads a server's stream. A runner that talks to a remote
engine is also an :class:`EngineRunner`: it reports the engine's health, can probe it, and owns
an HTTP client the registry closes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from models.errors import ModelError

if TYPE_CHECKING:
    from models.engines import EngineHealth, EngineProbe
    from models.requests import GenerationRequest
    from models.streams import GenerationStream

Req = TypeVar("Req", contravariant=True)
Prep = TypeVar("Prep")
Out = TypeVar("Out")
Res = TypeVar("Res", covariant=True)
T = TypeVar("T")

# One row of model inputs, as plain token-id lists (input_ids, attention_mask, token_type_ids).
Features = dict[str, list[int]]

# Rows per forward pass when the caller does not say (the registry uses ModelSpec.forward_batch).
DEFAULT_ROWS_PER_PASS = 16


class DeviceRun(Protocol):
    """Runs a blocking function on the model's device thread: ``await run(fn)``."""

    def __call__(self, fn: Callable[[], T]) -> Awaitable[T]: ...


class CancelFlag(Protocol):
    """Anything with ``is_set()``: a ``threading.Event`` or an ``asyncio.Event``."""

    def is_set(self) -> bool: ...


@runtime_checkable
class Runner(Protocol[Req, Prep, Out, Res]):
    """A batched task's model: prepare each request, forward passes of rows, finish each result.

    Every method runs on the device's executor thread.
    """

    def size_of(self, request: Req) -> int:
        """The request's size in characters (the batcher keeps very long ones apart)."""
        ...

    def prepare(self, request: Req) -> Prep:
        """Model inputs for one request; raise :class:`InvalidInput` if it has none."""
        ...

    def rows(self, prepared: Prep) -> Sequence[Features]:
        """The model input rows of one prepared request (one per window of a long input)."""
        ...

    def forward(self, rows: Sequence[Features]) -> Sequence[Out]:
        """One padded pass of the model over ``rows``: an output per row, in order (plain
        arrays cut to the row's length)."""
        ...

    def finish(self, request: Req, prepared: Prep, outputs: Sequence[Out]) -> Res:
        """The request's result, from its inputs and its rows' outputs (in row order)."""
        ...


# The registry holds runners of every task side by side.
AnyRunner = Runner[Any, Any, Any, Any]

# A batch's work as device-thread steps; the generator's return value is the batch's results.
BatchSteps = Generator[None, None, list[Res | ModelError]]


def batch_steps(
    runner: Runner[Req, Prep, Out, Res],
    requests: Sequence[Req],
    rows_per_pass: int = DEFAULT_ROWS_PER_PASS,
) -> BatchSteps[Res]:
    """The steps answering ``requests``: one result or error per request, in order.

    Step one prepares every request; each further step is one forward pass of at most
    ``rows_per_pass`` rows, shortest rows first (similar lengths pad little), across requests;
    the last one also finishes every request. A request that cannot be prepared or finished
    fails alone; an error in ``forward`` fails the batch (the batcher then retries one by one).
    """
    results: dict[int, Res | ModelError] = {}
    prepared: dict[int, Prep] = {}
    for i, request in enumerate(requests):
        try:
            prepared[i] = runner.prepare(request)
        except ModelError as exc:
            results[i] = exc
    # Every row of every prepared request, as (request index, row index, row).
    rows = [
        (i, r, row) for i, inputs in prepared.items() for r, row in enumerate(runner.rows(inputs))
    ]
    outputs: dict[int, list[Any]] = {i: [] for i in prepared}
    for i, _, _ in rows:
        outputs[i].append(None)
    order = sorted(range(len(rows)), key=lambda k: len(rows[k][2].get("input_ids", ())))
    step = max(1, rows_per_pass)
    for start in range(0, len(order), step):
        yield  # the previous step's device job ends here; other jobs may run before this pass
        chunk = order[start : start + step]
        passed = runner.forward([rows[k][2] for k in chunk])
        if len(passed) != len(chunk):
            raise RuntimeError(f"forward returned {len(passed)} outputs for {len(chunk)} rows")
        for k, output in zip(chunk, passed, strict=True):
            i, r, _ = rows[k]
            outputs[i][r] = output
    for i, inputs in prepared.items():
        try:
            results[i] = runner.finish(requests[i], inputs, outputs[i])
        except ModelError as exc:
            results[i] = exc
    return [results[i] for i in range(len(requests))]


def run_to_end(steps: Generator[None, None, T]) -> T:
    """Run every step of ``steps`` now; its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


def process_batch(
    runner: Runner[Req, Prep, Out, Res],
    requests: Sequence[Req],
    rows_per_pass: int = DEFAULT_ROWS_PER_PASS,
) -> list[Res | ModelError]:
    """:func:`batch_steps` run at once, on the calling thread."""
    return run_to_end(batch_steps(runner, requests, rows_per_pass))


@runtime_checkable
class StreamRunner(Protocol):
    """A streamed task's model: one :class:`GenerationStream` per request."""

    def open(self, request: GenerationRequest, cancel: CancelFlag | None) -> GenerationStream:
        """Start generating; pieces arrive as the stream is iterated, its ``stats`` at the end.

        Setting ``cancel`` (or closing the stream) stops generation at the next token.
        """
        ...


@runtime_checkable
class EngineRunner(Protocol):
    """What a runner serving a model from a remote engine adds (to :class:`Runner` or
    :class:`StreamRunner`): it is built from the spec alone (``cls(spec)``), no model is loaded
    in this process."""

    def health(self) -> EngineHealth:
        """How the engine is doing, as the runner last saw it (no I/O)."""
        ...

    async def probe(self) -> EngineProbe:
        """Ask the engine now (briefly) whether it answers and serves the model."""
        ...

    async def aclose(self) -> None:
        """Close the runner's client and its connections."""
        ...
