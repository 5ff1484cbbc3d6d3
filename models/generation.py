"""One stream's generation, apart from the model: its prompt, sampling, stop rules and text.

A :class:`GenerationSession` holds what belongs to one stream alone: the prompt's token ids, its
own sampling parameters (logits processors and seeded generator), its end-of-sequence ids and
token budget, its cancel flag, and the incremental decoding of its tokens into text pieces. It
never calls the model: the continuous decoder (``models.continuous``) runs one forward pass for
every active stream of a model and hands each session its row of logits
(:meth:`GenerationSession.choose`, then :meth:`GenerationSession.accept`). Only the device's
executor thread touches a session.
"""

from __future__ import annotations

import logging
import time
from typing import Any, cast

import torch
from transformers import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from models.errors import InvalidInput
from models.names import public_name
from models.requests import GenerationRequest
from models.results import FinishReason, GenerationStats
from models.runners.base import CancelFlag

log = logging.getLogger(__name__)


def build_prompt_ids(tokenizer: Any, request: GenerationRequest) -> list[int]:
    """Token ids of the conversation, through the chat template when the tokenizer has one
    (and the request did not turn it off); without one, the text of a plain prompt (system
    messages before it are left out, as a base model has no place for them)."""
    use_template = request.params.use_chat_template
    if use_template is None:
        use_template = bool(getattr(tokenizer, "chat_template", None))
    if use_template:
        if not getattr(tokenizer, "chat_template", None):
            raise InvalidInput("This model has no chat template; send a plain prompt instead.")
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        # The template already holds any BOS the model needs.
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if not request.is_plain_prompt:
        raise InvalidInput(
            "This model has no chat template, so it continues one prompt, not a conversation."
        )
    ids = list(tokenizer(request.messages[-1].content)["input_ids"])
    if not ids:
        bos = (
            tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        )
        if bos is None:
            raise InvalidInput("The prompt is empty; write something to continue.")
        ids = [bos]
    return ids


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


def _context_limit(model: Any) -> int | None:
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(model.config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class GenerationSession:
    """One generation in progress; every method runs on the executor thread."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        request: GenerationRequest,
        *,
        model_id: str,
        model_name: str | None = None,
        cancel: CancelFlag | None = None,
    ) -> None:
        params = request.params
        if params.max_new_tokens is None:
            raise ValueError("the request's params must be clamped before use")
        self.tokenizer = tokenizer
        self.params = params
        self.model_id = model_id
        self.model_name = model_name or public_name(model_id)
        self.cancel = cancel
        self.started = time.perf_counter()
        ids = build_prompt_ids(tokenizer, request)
        self.max_new_tokens = params.max_new_tokens
        limit = _context_limit(model)
        if limit is not None:
            # Keep the end of a long prompt, leaving room for the answer.
            self.max_new_tokens = min(self.max_new_tokens, max(1, limit // 2))
            ids = ids[-(limit - self.max_new_tokens) :]
        self.prompt_ids = ids
        self.prompt_tokens = len(ids)
        # The prompt and every token chosen so far (the repetition penalty reads them).
        self.ids = torch.tensor([ids], dtype=torch.long, device=model.device)
        self.generated: list[int] = []
        self.eos_ids = _eos_ids(model, tokenizer)
        self.processors = LogitsProcessorList()
        if params.repetition_penalty != 1.0:
            self.processors.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
        if params.do_sample:
            if params.temperature != 1.0:
                self.processors.append(TemperatureLogitsWarper(params.temperature))
            if params.top_p < 1.0:
                self.processors.append(TopPLogitsWarper(params.top_p))
        self.generator: torch.Generator | None = None
        if params.seed is not None:
            self.generator = torch.Generator(device=model.device).manual_seed(params.seed)
        self.finish_reason: FinishReason | None = None
        # Incremental decoding state, as transformers' TextStreamer: re-decode the tokens since
        # the last newline and emit only the new characters.
        self._line_tokens: list[int] = []
        self._line_emitted = 0
        self.text_parts: list[str] = []

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    @property
    def cancelled(self) -> bool:
        """Whether the caller asked to stop (the stream then ends at the next token)."""
        return self.cancel is not None and self.cancel.is_set()

    def choose(self, logits: torch.Tensor) -> int:
        """The next token from ``logits`` (the vocabulary's scores for this stream's next
        position), under this stream's own sampling parameters."""
        scores = self.processors(cast(torch.LongTensor, self.ids), logits.float().view(1, -1))
        if self.params.do_sample:
            probs = torch.softmax(scores, dim=-1)
            token = torch.multinomial(probs, num_samples=1, generator=self.generator)
        else:
            token = torch.argmax(scores, dim=-1, keepdim=True)
        return int(token.item())

    def accept(self, token: int) -> str:
        """Record ``token``; the text it adds (possibly empty). Sets :attr:`finish_reason`
        when it ends the generation (end of sequence, or the token budget)."""
        self.generated.append(token)
        self.ids = torch.cat([self.ids, self.ids.new_tensor([[token]])], dim=-1)
        if token in self.eos_ids:
            self.finish_reason = "stop"
            piece = self._flush()
        else:
            piece = self._decode_increment(token)
            if len(self.generated) >= self.max_new_tokens:
                self.finish_reason = "length"
                piece += self._flush()
        return self._record(piece)

    def stop(self) -> str:
        """End the generation as cancelled; the text still held back (possibly empty)."""
        self.finish_reason = "cancelled"
        return self._record(self._flush())

    def _record(self, piece: str) -> str:
        if piece:
            self.text_parts.append(piece)
        return piece

    def _decode_increment(self, token: int) -> str:
        self._line_tokens.append(token)
        text = self.tokenizer.decode(self._line_tokens, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            # An incomplete multi-byte character: wait for the next token.
            return ""
        piece = text[self._line_emitted :]
        if text.endswith("\n"):
            self._line_tokens = []
            self._line_emitted = 0
        else:
            self._line_emitted = len(text)
        return piece

    def _flush(self) -> str:
        text = self.tokenizer.decode(self._line_tokens, skip_special_tokens=True)
        piece = text[self._line_emitted :]
        self._line_emitted = len(text)
        return piece

    def stats(self) -> GenerationStats:
        return GenerationStats(
            text="".join(self.text_parts),
            prompt_tokens=self.prompt_tokens,
            new_tokens=len(self.generated),
            seconds=time.perf_counter() - self.started,
            finish_reason=self.finish_reason or "cancelled",
            model_id=self.model_id,
            model_name=self.model_name,
        )
