"""Counting a conversation's prompt for the model that answers it, and that model's window."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from transformers import AutoModelForCausalLM, AutoTokenizer

from models.generation import GenerationSession, build_prompt_ids
from models.prompts import (
    CountsPrompts,
    EstimatedCounter,
    PromptCounter,
    PromptWindow,
    TokenizerCounter,
    counter_for,
    estimate_tokens,
)
from models.registry import ModelRegistry
from models.requests import ChatMessage, GenerationParams, GenerationRequest
from tests.support.models import TINY_CHAT_TEMPLATE, build_tiny_gpt2

T = TypeVar("T")


async def _inline(fn: Callable[[], T]) -> T:
    return fn()


def _conversation(*texts: str) -> GenerationRequest:
    roles = ("user", "assistant")
    messages = [ChatMessage("system", "Be brief.")]
    messages += [ChatMessage(roles[i % 2], text) for i, text in enumerate(texts)]  # type: ignore[arg-type]
    return GenerationRequest(tuple(messages))


async def test_the_registry_counts_with_the_models_own_tokenizer_and_template(
    registry: ModelRegistry, tiny_chat_gpt2_dir: Path
) -> None:
    counter = await registry.prompt_counter()
    assert counter.window == PromptWindow(
        context_window=1024, chat_template=True, system_role=True, exact=True
    )
    request = _conversation("Hello there", "Hi! How can I help?", "Tell me about owls")
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_gpt2_dir)
    assert await counter.count(request) == len(build_prompt_ids(tokenizer, request))


def test_the_budget_rule_is_the_generation_sessions(tiny_chat_gpt2_dir: Path) -> None:
    """A prompt of exactly the budget is generated from whole; one token more is cut."""
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_gpt2_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_gpt2_dir)
    counter = asyncio.run(TokenizerCounter.open(model, tokenizer, _inline))
    max_new = 700  # more than half the 1024-token window: the reply gets half
    assert counter.window.reply_tokens(max_new) == 512
    budget = counter.window.prompt_budget(max_new)
    assert budget == 512
    params = GenerationParams(max_new_tokens=max_new, temperature=0)
    words = "owl " * 2000
    low, high = 0, len(words)
    # The longest user message whose prompt fits the budget exactly or just under it.
    while low < high:
        mid = (low + high + 1) // 2
        request = GenerationRequest((ChatMessage("user", words[:mid]),), params)
        if asyncio.run(counter.count(request)) <= budget:
            low = mid
        else:
            high = mid - 1
    fits = GenerationRequest((ChatMessage("user", words[:low]),), params)
    fitted = asyncio.run(counter.count(fits))
    session = GenerationSession(model, tokenizer, fits, model_id="tiny")
    assert session.prompt_tokens == fitted  # nothing cut
    over = GenerationRequest((ChatMessage("user", words[: low + 8]),), params)
    assert asyncio.run(counter.count(over)) > budget
    cut = GenerationSession(model, tokenizer, over, model_id="tiny")
    assert cut.prompt_tokens == budget  # the session cuts what does not fit


def test_a_model_without_a_template_and_one_refusing_system_messages(tmp_path: Path) -> None:
    plain = build_tiny_gpt2(tmp_path / "plain")
    no_system = build_tiny_gpt2(
        tmp_path / "no-system",
        chat_template=(
            "{% if messages[0]['role'] == 'system' %}"
            "{{ raise_exception('System role not supported') }}{% endif %}" + TINY_CHAT_TEMPLATE
        ),
    )
    for folder, template, system in ((plain, False, False), (no_system, True, False)):
        model = AutoModelForCausalLM.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        counter = asyncio.run(TokenizerCounter.open(model, tokenizer, _inline))
        assert (counter.window.chat_template, counter.window.system_role) == (template, system)
    request = GenerationRequest.from_prompt("A plain prompt", GenerationParams())
    assert asyncio.run(counter.count(request)) > 0


async def test_the_estimate_is_conservative_and_the_fallback(tiny_chat_gpt2_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_gpt2_dir)
    request = _conversation(
        "The quick brown fox jumps over the lazy dog.", "It does, every morning at seven."
    )
    assert estimate_tokens(request.messages) >= len(build_prompt_ids(tokenizer, request))
    counter = await counter_for(streamer=object(), loaded=None, run=_inline)
    assert isinstance(counter, EstimatedCounter) and not counter.window.exact
    assert await counter.count(request) == estimate_tokens(request.messages)


class _ServedEngine:
    """A stand-in for a served engine that counts with its own tokenize endpoint."""

    async def prompt_counter(self) -> PromptCounter:
        return EstimatedCounter(context_window=32_768)


async def test_a_streamer_that_counts_for_itself_is_asked() -> None:
    engine = _ServedEngine()
    assert isinstance(engine, CountsPrompts)
    counter = await counter_for(engine, loaded=None, run=_inline)
    assert counter.window.context_window == 32_768
