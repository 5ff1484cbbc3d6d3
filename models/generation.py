"""Causal LM generation as a resumable token loop that runs in short executor jobs.

A :class:`GenerationSession` holds one generation's state (KV cache, ids, sampler). The local
generation runner (``models.runners.generation``) calls :meth:`GenerationSession.step` for a few
tokens at a time on the device's executor thread, so encoder batches queued meanwhile run
between steps instead of waiting for the whole generation; text increments go to the event loop
through a callback as each token is decoded. Only the executor thread touches a session.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from typing import Any, cast

import torch
from transformers import (
    DynamicCache,
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


def _cache_argument(model: Any) -> str:
    # transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name warns).
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


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
        self.model = model
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
        self.prompt_tokens = len(ids)
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
        self.cache: Any = DynamicCache()
        self._cache_arg = _cache_argument(model)
        self.finish_reason: FinishReason | None = None
        # Incremental decoding state, as transformers' TextStreamer: re-decode the tokens since
        # the last newline and emit only the new characters.
        self._line_tokens: list[int] = []
        self._line_emitted = 0
        self.text_parts: list[str] = []

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def _cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def _next_token(self) -> int:
        if self.cache.get_seq_length() == 0:
            input_ids = self.ids
        else:
            input_ids = self.ids[:, -1:]
        attention_mask = torch.ones_like(self.ids)
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_arg: self.cache},
        )
        self.cache = getattr(out, self._cache_arg)
        scores = self.processors(cast(torch.LongTensor, self.ids), out.logits[:, -1, :].float())
        if self.params.do_sample:
            probs = torch.softmax(scores, dim=-1)
            token = torch.multinomial(probs, num_samples=1, generator=self.generator)
        else:
            token = torch.argmax(scores, dim=-1, keepdim=True)
        self.ids = torch.cat([self.ids, token.to(self.ids.dtype)], dim=-1)
        return int(token.item())

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

    def step(self, max_tokens: int, emit: Callable[[str], None] | None = None) -> str:
        """Generate up to ``max_tokens`` tokens; return (and ``emit``) the new text."""
        pieces: list[str] = []
        with torch.inference_mode():
            for _ in range(max_tokens):
                if self.done:
                    break
                if self._cancelled():
                    self.finish_reason = "cancelled"
                    piece = self._flush()
                else:
                    token = self._next_token()
                    self.generated.append(token)
                    if token in self.eos_ids:
                        self.finish_reason = "stop"
                        piece = self._flush()
                    else:
                        piece = self._decode_increment(token)
                        if len(self.generated) >= self.max_new_tokens:
                            self.finish_reason = "length"
                            piece += self._flush()
                if piece:
                    pieces.append(piece)
                    self.text_parts.append(piece)
                    if emit is not None:
                        emit(piece)
        return "".join(pieces)

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
