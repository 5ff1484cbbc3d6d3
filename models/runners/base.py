"""The two runner interfaces the registry serves models through (no torch import here).

A batched task's :class:`Runner` splits a batch the way transformers' pipelines do
(preprocess -> _forward -> postprocess): :meth:`~Runner.prepare` turns one request into model
inputs (tokenizing; a bad request fails alone), :meth:`~Runner.forward` runs the model over the
prepared requests of a batch (the only call into the model, and the hot path: another runtime,
such as ONNX Runtime, replaces this method alone), and :meth:`~Runner.finish` turns one request's
outputs into its plain result (never tensors). :func:`process_batch` composes them into the
batch function the :class:`~models.batcher.MicroBatcher` runs on the device thread.

A streamed task's :class:`StreamRunner` opens one stream per request: the local implementation
generates on the device thread a few tokens at a time; a remote one would read a server's stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from models.errors import ModelError

if TYPE_CHECKING:
    from models.requests import GenerationRequest
    from models.streams import GenerationStream

Req = TypeVar("Req", contravariant=True)
Prep = TypeVar("Prep")
Out = TypeVar("Out")
Res = TypeVar("Res", covariant=True)
T = TypeVar("T")


class DeviceRun(Protocol):
    """Runs a blocking function on the model's device thread: ``await run(fn)``."""

    def __call__(self, fn: Callable[[], T]) -> Awaitable[T]: ...


class CancelFlag(Protocol):
    """Anything with ``is_set()``: a ``threading.Event`` or an ``asyncio.Event``."""

    def is_set(self) -> bool: ...


@runtime_checkable
class Runner(Protocol[Req, Prep, Out, Res]):
    """A batched task's model: prepare each request, forward the batch, finish each result.

    Every method runs on the device's executor thread.
    """

    def size_of(self, request: Req) -> int:
        """The request's size in characters (the batcher keeps very long ones apart)."""
        ...

    def prepare(self, request: Req) -> Prep:
        """Model inputs for one request; raise :class:`InvalidInput` if it has none."""
        ...

    def forward(self, batch: Sequence[Prep]) -> Sequence[Out]:
        """The model's outputs for each prepared request, in order (plain arrays)."""
        ...

    def finish(self, request: Req, prepared: Prep, output: Out) -> Res:
        """The request's result, from its inputs and outputs."""
        ...


# The registry holds runners of every task side by side.
AnyRunner = Runner[Any, Any, Any, Any]


def process_batch(
    runner: Runner[Req, Prep, Out, Res], requests: Sequence[Req]
) -> list[Res | ModelError]:
    """One result or error per request, in order: a request that cannot be prepared or finished
    fails alone; an error in ``forward`` fails the batch (the batcher then retries one by one)."""
    results: dict[int, Res | ModelError] = {}
    prepared: dict[int, Prep] = {}
    for i, request in enumerate(requests):
        try:
            prepared[i] = runner.prepare(request)
        except ModelError as exc:
            results[i] = exc
    if prepared:
        outputs = runner.forward(list(prepared.values()))
        for (i, inputs), output in zip(prepared.items(), outputs, strict=True):
            try:
                results[i] = runner.finish(requests[i], inputs, output)
            except ModelError as exc:
                results[i] = exc
    return [results[i] for i in range(len(requests))]


@runtime_checkable
class StreamRunner(Protocol):
    """A streamed task's model: one :class:`GenerationStream` per request."""

    def open(self, request: GenerationRequest, cancel: CancelFlag | None) -> GenerationStream:
        """Start generating; pieces arrive as the stream is iterated, its ``stats`` at the end.

        Setting ``cancel`` (or closing the stream) stops generation at the next token.
        """
        ...
