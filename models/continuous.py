"""Continuous batching for local generation: every active stream of a model advances together.

A :class:`ContinuousDecoder` owns one causal LM's streams. Each :meth:`~ContinuousDecoder.run`
(one executor job on the model's device thread) takes a few steps; each step

1. ends the streams that were stopped (their cancel flag), and lets new streams join: each new
   prompt is read in a forward pass of its own (prefill), whose last logits give the stream's
   first token, and its key/value cache joins the batch's;
2. runs **one** forward pass for all the active streams (:class:`DecodeBatch`: their caches side
   by side, left-padded to the longest, with an attention mask and each row's own positions), and
   hands each stream its row of logits: each samples with its own parameters, applies its own
   stop rules and streams its own text (:class:`~models.generation.GenerationSession`);
3. drops the streams that ended from the batch.

A stream that fails (its prompt, its sampling, its text) leaves alone; when the batched pass
itself fails, each stream is retried alone, so only the ones that fail alone fail. Between jobs
the device thread runs other models' work (encoder batches), as before.

Why not transformers' own continuous batching (``model.init_continuous_batching()``): its
manager runs the model on a thread of its own, beside the device thread that must own every call
into the model and the tokenizer (encoder batches would then run at the same time on the same
cores instead of between steps), and it samples with manager-wide settings: ``do_sample``, the
repetition penalty and the random generator are shared by every request (only temperature,
top-k and top-p are per request), where each stream here keeps its own, seed included.

Models whose cache cannot be batched this way (layers other than plain ``DynamicLayer``, or a
forward without ``position_ids``) still work: each stream then has a batch of its own, and the
streams take turns within each step as before.
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from models.errors import ModelError
from models.generation import GenerationSession
from models.requests import GenerationRequest
from models.results import GenerationStats
from models.runners.base import CancelFlag

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallStyle:
    """How a causal LM's forward takes a cache and positions (read once per model)."""

    cache_argument: str  # transformers 5.x renamed ``past_key_values`` to ``cache``
    takes_positions: bool

    @classmethod
    def of(cls, model: Any) -> CallStyle:
        parameters = inspect.signature(model.forward).parameters
        return cls(
            cache_argument="cache" if "cache" in parameters else "past_key_values",
            takes_positions="position_ids" in parameters,
        )


# Each layer's (keys, values), each (rows, heads, length, head size).
KeyValues = list[tuple[torch.Tensor, torch.Tensor]]


def _key_values(cache: Any) -> KeyValues | None:
    """The cache's tensors when every layer is a plain growing pair (batchable), else None."""
    layers = getattr(cache, "layers", None)
    if not layers:
        return None
    pairs: KeyValues = []
    for layer in layers:
        if type(layer) is not DynamicLayer or layer.keys is None or layer.values is None:
            return None
        pairs.append((layer.keys, layer.values))
    return pairs


def _put_key_values(cache: Any, pairs: KeyValues) -> None:
    for layer, (keys, values) in zip(cache.layers, pairs, strict=True):
        layer.keys, layer.values = keys, values


def _batchable_key_values(cache: Any) -> KeyValues:
    pairs = _key_values(cache)
    if pairs is None:
        raise RuntimeError("rows of this model's cache cannot be batched")
    return pairs


def _left_pad(tensor: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    missing = length - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


class DecodeBatch:
    """Rows of one causal LM decoded together: one key/value cache holding every row,
    left-padded to the longest row, with the attention mask that hides the padding and each
    row's next position. Rows join (:meth:`merge`) and leave (:meth:`keep`) between passes."""

    def __init__(
        self,
        model: Any,
        style: CallStyle,
        cache: Any,
        mask: torch.Tensor,
        positions: torch.Tensor,
    ) -> None:
        self.model = model
        self.style = style
        self.cache = cache
        self.mask = mask  # (rows, length): 1 for real tokens, 0 for left padding
        self.positions = positions  # (rows,): each row's next position

    @classmethod
    def prefill(
        cls, model: Any, style: CallStyle, ids: Sequence[int]
    ) -> tuple[DecodeBatch, torch.Tensor]:
        """A batch of one row holding ``ids`` read by the model, and the logits of the row's
        next token (vocabulary,)."""
        device = model.device
        input_ids = torch.tensor([list(ids)], dtype=torch.long, device=device)
        mask = torch.ones_like(input_ids)
        positions = torch.tensor([len(ids)], dtype=torch.long, device=device)
        batch = cls(model, style, DynamicCache(), mask, positions)
        logits = batch._forward(input_ids, mask, torch.arange(len(ids), device=device)[None])
        return batch, logits[0]

    @property
    def rows(self) -> int:
        return int(self.mask.shape[0])

    @property
    def batchable(self) -> bool:
        """Whether rows can join or leave this batch (see the module's notes)."""
        return self.style.takes_positions and _key_values(self.cache) is not None

    def _forward(
        self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        kwargs: dict[str, Any] = {self.style.cache_argument: self.cache}
        if self.style.takes_positions:
            kwargs["position_ids"] = positions
        out = self.model(
            input_ids=input_ids, attention_mask=mask, use_cache=True, logits_to_keep=1, **kwargs
        )
        self.cache = getattr(out, self.style.cache_argument)
        return out.logits[:, -1, :]

    def step(self, tokens: Sequence[int]) -> torch.Tensor:
        """One forward pass: each row reads its token in ``tokens``; the logits of each row's
        next token, (rows, vocabulary). When it raises, the batch is as it was before."""
        device = self.mask.device
        input_ids = torch.tensor([[t] for t in tokens], dtype=torch.long, device=device)
        mask = torch.cat([self.mask, self.mask.new_ones((self.rows, 1))], dim=1)
        # A failing pass may leave some layers one token longer: keep what to put back
        # (layers grow by concatenation into new tensors, so these stay as they are).
        saved = _key_values(self.cache)
        try:
            logits = self._forward(input_ids, mask, self.positions.unsqueeze(1))
        except BaseException:
            if saved is not None:
                _put_key_values(self.cache, saved)
            raise
        self.mask = mask
        self.positions = self.positions + 1
        return logits

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only ``rows`` (in that order), and drop the padding no kept row needs."""
        pairs = _batchable_key_values(self.cache)
        index = torch.tensor(list(rows), dtype=torch.long, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        # Columns that are padding in every kept row are dropped from the left.
        real = mask.any(dim=0).nonzero()
        start = int(real[0].item()) if len(real) else mask.shape[1]
        self.mask = mask[:, start:]
        self.positions = self.positions.index_select(0, index)
        _put_key_values(
            self.cache,
            [
                (k.index_select(0, index)[:, :, start:], v.index_select(0, index)[:, :, start:])
                for k, v in pairs
            ],
        )

    def split(self) -> list[DecodeBatch]:
        """One batch per row: the same cache rows, each without its padding."""
        pairs = _batchable_key_values(self.cache)
        parts = []
        for row in range(self.rows):
            part = DecodeBatch(
                self.model,
                self.style,
                DynamicCache([(k[row : row + 1], v[row : row + 1]) for k, v in pairs]),
                self.mask[row : row + 1],
                self.positions[row : row + 1],
            )
            part.keep([0])
            parts.append(part)
        return parts

    def merge(self, others: Sequence[DecodeBatch]) -> None:
        """Append the rows of ``others`` (batchable batches of the same model) after this
        batch's rows, every row left-padded to the longest."""
        batches = [self, *others]
        all_pairs = [_batchable_key_values(batch.cache) for batch in batches]
        length = max(int(batch.mask.shape[1]) for batch in batches)
        self.mask = torch.cat([_left_pad(batch.mask, length, 1) for batch in batches], dim=0)
        self.positions = torch.cat([batch.positions for batch in batches], dim=0)
        merged: KeyValues = []
        for layer in zip(*all_pairs, strict=True):
            keys = torch.cat([_left_pad(k, length, 2) for k, _ in layer], dim=0)
            values = torch.cat([_left_pad(v, length, 2) for _, v in layer], dim=0)
            merged.append((keys, values))
        _put_key_values(self.cache, merged)


@dataclass(eq=False)
class Ticket:
    """One stream's request to the decoder, and where its output goes.

    ``on_piece`` receives each text piece and ``on_end`` the stream's stats, or the error that
    ended it; both are called on the device thread (the caller hands them to its event loop).
    """

    request: GenerationRequest
    cancel: CancelFlag | None
    on_piece: Callable[[str], None]
    on_end: Callable[[GenerationStats | BaseException], None]


@dataclass(eq=False)
class _Stream:
    ticket: Ticket
    session: GenerationSession
    batch: DecodeBatch  # the batch holding this stream's row
    token: int  # the last chosen token, which the next pass reads
    error: BaseException | None = None  # what ended it, when it failed

    @property
    def ended(self) -> bool:
        return self.error is not None or self.session.done


class ContinuousDecoder:
    """The streams of one causal LM, decoded together (see the module's notes).

    :meth:`submit` and :attr:`busy` are called on the event loop; everything else runs on the
    model's device thread, one :meth:`run` at a time. The streams of a batch are kept in its
    row order: streams that join are appended, as their rows are.
    """

    def __init__(self, model: Any, tokenizer: Any, *, model_id: str, model_name: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.model_name = model_name
        self.style = CallStyle.of(model)
        self._pending: deque[Ticket] = deque()  # appended by the loop, taken by the device thread
        self._streams: list[_Stream] = []
        self.passes = 0  # forward passes over active streams (for tests and benchmarks)
        self.widest = 0  # the most streams one pass has held

    @property
    def busy(self) -> bool:
        """Whether any stream is waiting to join or generating."""
        return bool(self._pending) or bool(self._streams)

    @property
    def active(self) -> int:
        """Streams generating now."""
        return len(self._streams)

    def submit(self, ticket: Ticket) -> None:
        """Queue a stream; it joins at the next step."""
        self._pending.append(ticket)

    def run(self, steps: int) -> None:
        """Take up to ``steps`` steps (one device job); stop early when nothing is left."""
        with torch.inference_mode():
            for _ in range(steps):
                if not self.busy:
                    return
                self._stop_cancelled()
                self._admit()
                self._decode()

    def fail_all(self, error: BaseException) -> None:
        """End every stream with ``error`` (when the device thread is gone)."""
        while self._pending:
            _deliver_end(self._pending.popleft(), error)
        streams, self._streams = self._streams, []
        for stream in streams:
            _deliver_end(stream.ticket, error)

    # ----------------------------------------------------------------- the steps

    def _stop_cancelled(self) -> None:
        for stream in self._streams:
            if stream.session.cancelled and not stream.ended:
                _deliver_piece(stream.ticket, stream.session.stop())
        self._leave()

    def _admit(self) -> None:
        """Every queued stream joins: its prompt read alone, its first token chosen, its
        cache rows appended to the running batch's."""
        while self._pending:
            stream = self._open(self._pending.popleft())
            if stream is None:
                continue
            running = next((s.batch for s in reversed(self._streams) if not s.ended), None)
            joins = not stream.ended and stream.batch.batchable
            if joins and running is not None and running.batchable:
                running.merge([stream.batch])
                stream.batch = running
            self._streams.append(stream)
        self._leave()

    def _open(self, ticket: Ticket) -> _Stream | None:
        """The stream of ``ticket`` with its first token, or None when it ended already."""
        try:
            session = GenerationSession(
                self.model,
                self.tokenizer,
                ticket.request,
                model_id=self.model_id,
                model_name=self.model_name,
                cancel=ticket.cancel,
            )
        except Exception as exc:  # a bad prompt fails its own stream
            _deliver_end(ticket, exc)
            return None
        if session.cancelled:
            session.stop()
            _deliver_end(ticket, session.stats())
            return None
        try:
            batch, logits = DecodeBatch.prefill(self.model, self.style, session.prompt_ids)
            stream = _Stream(ticket, session, batch, token=session.choose(logits))
            _deliver_piece(ticket, session.accept(stream.token))
        except Exception as exc:
            if not isinstance(exc, ModelError):
                log.warning("a generation stream failed to start", exc_info=True)
            _deliver_end(ticket, exc)
            return None
        return stream

    def _members(self, batch: DecodeBatch) -> list[_Stream]:
        return [s for s in self._streams if s.batch is batch]

    def _decode(self) -> None:
        """One pass per batch (one batch for a batchable model); each stream takes its row."""
        for batch in list({id(s.batch): s.batch for s in self._streams}.values()):
            members = self._members(batch)
            try:
                logits = batch.step([s.token for s in members])
            except Exception as exc:
                if len(members) == 1:
                    log.warning("a generation stream failed", exc_info=True)
                    members[0].error = exc
                else:
                    log.warning(
                        "a batched pass of %d generation streams failed; each goes on alone",
                        len(members),
                        exc_info=True,
                    )
                    self._retry_alone(batch, members)
                continue
            self.passes += 1
            self.widest = max(self.widest, len(members))
            for row, stream in enumerate(members):
                self._take(stream, logits[row])
        self._leave()

    def _take(self, stream: _Stream, logits: torch.Tensor) -> None:
        try:
            stream.token = stream.session.choose(logits)
            _deliver_piece(stream.ticket, stream.session.accept(stream.token))
        except Exception as exc:
            log.warning("a generation stream failed", exc_info=True)
            stream.error = exc

    def _retry_alone(self, batch: DecodeBatch, members: list[_Stream]) -> None:
        """After a failed batched pass: each stream's pass alone; those that pass batch again."""
        for stream, part in zip(members, batch.split(), strict=True):
            stream.batch = part
            try:
                logits = part.step([stream.token])
            except Exception as exc:
                log.warning("a generation stream failed", exc_info=True)
                stream.error = exc
                continue
            self.passes += 1
            self._take(stream, logits[0])
        going = [s for s in members if not s.ended]
        if len(going) > 1:
            head = going[0].batch
            head.merge([s.batch for s in going[1:]])
            for stream in going[1:]:
                stream.batch = head

    def _leave(self) -> None:
        """Streams that ended leave: their rows go, their outcome is delivered."""
        ended = [s for s in self._streams if s.ended]
        if not ended:
            return
        for batch in list({id(s.batch): s.batch for s in ended}.values()):
            members = self._members(batch)
            kept = [row for row, s in enumerate(members) if not s.ended]
            if kept and len(kept) < len(members):
                batch.keep(kept)
        self._streams = [s for s in self._streams if not s.ended]
        for stream in ended:
            outcome = stream.error if stream.error is not None else stream.session.stats()
            _deliver_end(stream.ticket, outcome)


def _deliver_piece(ticket: Ticket, piece: str) -> None:
    if piece:
        ticket.on_piece(piece)


def _deliver_end(ticket: Ticket, outcome: GenerationStats | BaseException) -> None:
    try:
        ticket.on_end(outcome)
    except Exception:
        log.exception("the end of a generation stream could not be delivered")
