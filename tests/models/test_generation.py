"""Generation: streaming, stats, cancellation, chat template, clamping, interleaving."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from models.errors import InvalidInput, QueueFull
from models.generation import GenerationSession, build_prompt_ids
from models.registry import ModelRegistry
from models.requests import ChatMessage, GenerationParams, GenerationRequest
from models.specs import Task
from tests.support.generation import alone, greedy
from tests.support.waiting import wait_until

GREEDY = GenerationParams(temperature=0.0, max_new_tokens=12)


async def test_stream_pieces_add_up_to_the_final_text(registry: ModelRegistry) -> None:
    stream = registry.generate("Once upon a time", GenerationParams(max_new_tokens=10, seed=7))
    pieces = [piece async for piece in stream]
    stats = stream.stats
    assert stats is not None
    assert "".join(pieces) == stats.text
    assert all(pieces)
    assert 1 <= stats.new_tokens <= 10
    assert stats.finish_reason in {"length", "stop"}
    if stats.finish_reason == "length":
        assert stats.new_tokens == 10
    assert stats.seconds > 0 and stats.prompt_tokens > 0


async def test_greedy_generation_is_deterministic(registry: ModelRegistry) -> None:
    first = await registry.generate("The weather", GREEDY).collect()
    second = await registry.generate("The weather", GREEDY).collect()
    assert first.text == second.text and first.new_tokens == second.new_tokens


async def test_max_new_tokens_is_capped_by_the_spec(registry: ModelRegistry) -> None:
    cap = registry.spec_for(Task.GENERATION).max_new_tokens  # 24 in the fixture
    stats = await registry.generate("Hi", GenerationParams(max_new_tokens=10_000, seed=1)).collect()
    assert stats.new_tokens <= cap


async def test_cancel_stops_between_tokens(registry: ModelRegistry) -> None:
    cancel = asyncio.Event()
    stream = registry.generate(
        "Tell me a story", GenerationParams(max_new_tokens=24, seed=3), cancel=cancel
    )
    pieces = []
    async for piece in stream:
        pieces.append(piece)
        cancel.set()
    stats = stream.stats
    assert stats is not None
    assert stats.finish_reason in {"cancelled", "stop"}
    if stats.finish_reason == "cancelled":
        # A chunk may have been running when cancel was set: it stops at its next token.
        assert stats.new_tokens < 24


async def test_cancel_with_a_threading_event_before_start(registry: ModelRegistry) -> None:
    cancel = threading.Event()
    cancel.set()
    stats = await registry.generate("Hi", GREEDY, cancel=cancel).collect()
    assert stats.finish_reason == "cancelled" and stats.new_tokens == 0 and stats.text == ""


async def test_leaving_the_loop_early_frees_the_stream_slot(registry: ModelRegistry) -> None:
    stream = registry.generate("Hello", GenerationParams(max_new_tokens=24, seed=2))
    async for _ in stream:
        break
    await stream.aclose()
    handle = registry._handles[registry.spec_for(Task.GENERATION).key]
    assert handle.inflight == 0
    assert handle.slots is not None and handle.slots.active == 0


async def test_empty_prompt_is_invalid(registry: ModelRegistry) -> None:
    with pytest.raises(InvalidInput):
        await registry.generate("   ").collect()


def test_chat_template_wraps_the_prompt(tiny_chat_gpt2_dir: Path, tiny_gpt2_dir: Path) -> None:
    chat = AutoTokenizer.from_pretrained(tiny_chat_gpt2_dir)
    plain = AutoTokenizer.from_pretrained(tiny_gpt2_dir)
    request = GenerationRequest.from_prompt("Hello", system="Be brief.")
    ids = build_prompt_ids(chat, request)
    assert chat.decode(ids) == "system: Be brief.\nuser: Hello\nassistant:"
    # Turned off, or without a template, the prompt goes as is.
    untemplated = GenerationRequest.from_prompt(
        "Hello", GenerationParams(use_chat_template=False), system="Be brief."
    )
    assert chat.decode(build_prompt_ids(chat, untemplated)) == "Hello"
    assert plain.decode(build_prompt_ids(plain, request)) == "Hello"
    with pytest.raises(InvalidInput):
        build_prompt_ids(
            plain, GenerationRequest.from_prompt("Hello", GenerationParams(use_chat_template=True))
        )


def test_eos_token_stops_with_reason_stop(tiny_gpt2_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2_dir)
    request = GenerationRequest.from_prompt("Hello", GREEDY.clamped(12))
    first_token = tokenizer(alone(model, tokenizer, request).text)["input_ids"][0]
    # Treat that first greedy token as end-of-sequence: generation stops right there.
    session = GenerationSession(model, tokenizer, request, model_id="tiny")
    session.eos_ids = {first_token}
    assert session.accept(first_token) == ""
    stats = session.stats()
    assert stats.finish_reason == "stop" and stats.new_tokens == 1 and stats.text == ""


def test_decoding_alone_matches_model_generate_for_greedy_decoding(tiny_gpt2_dir: Path) -> None:
    import torch

    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2_dir)
    stats = alone(model, tokenizer, greedy("The cat sat", 15))
    ids = tokenizer("The cat sat", return_tensors="pt").input_ids
    with torch.inference_mode():
        reference = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=15,
            do_sample=False,
            pad_token_id=tokenizer.eos_token_id,
        )
    expected = reference[0, ids.shape[1] :].tolist()
    assert stats.new_tokens == len(expected) == 15
    assert stats.text == tokenizer.decode(expected, skip_special_tokens=True)


async def test_encoder_requests_run_while_a_generation_streams(registry: ModelRegistry) -> None:
    # Warm both models so timing below is about interleaving, not loading.
    await registry.classify("warm up")
    await registry.generate("warm", GenerationParams(max_new_tokens=1)).collect()
    finished: list[str] = []
    tokens: list[int] = []
    streaming = asyncio.Event()

    async def generate() -> None:
        stream = registry.generate("A long story", GenerationParams(max_new_tokens=24, seed=5))
        async for _ in stream:
            streaming.set()
        assert stream.stats is not None
        tokens.append(stream.stats.new_tokens)
        finished.append("generation")

    async def classify() -> None:
        await streaming.wait()
        await registry.classify("quick question")
        finished.append("classification")

    await asyncio.gather(generate(), classify())
    # The generation ran in several chunks, and the classification slipped in between them.
    assert tokens[0] > 2 * registry.spec_for(Task.GENERATION).generation_chunk_tokens
    assert finished == ["classification", "generation"]


async def test_too_many_waiting_streams_fail_fast(
    registry: ModelRegistry, tiny_specs: dict
) -> None:
    import dataclasses

    spec = dataclasses.replace(tiny_specs[Task.GENERATION], max_batch=1, queue_depth=1)
    reg = ModelRegistry([spec], allowed_roots=registry.allowed_roots, torch_threads=1)
    try:
        await reg.generate("warm", GenerationParams(max_new_tokens=1)).collect()
        params = GenerationParams(max_new_tokens=24, seed=1)
        slots = reg._handles[spec.key].slots
        assert slots is not None
        running = asyncio.ensure_future(reg.generate("one", params).collect())
        await wait_until(lambda: slots.active == 1, what="the first stream to start")
        waiting = asyncio.ensure_future(reg.generate("two", params).collect())
        await wait_until(lambda: slots.waiting == 1, what="the second stream to wait")
        with pytest.raises(QueueFull) as info:
            await reg.generate("three", params).collect()
        assert info.value.position == 2
        assert (await running).new_tokens > 0 and (await waiting).new_tokens > 0
    finally:
        await reg.close()


async def test_a_conversation_goes_through_the_chat_template(
    registry: ModelRegistry, tiny_chat_gpt2_dir: Path
) -> None:
    request = GenerationRequest(
        (
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "Hi"),
            ChatMessage("assistant", "Hello!"),
            ChatMessage("user", "Tell me more"),
        ),
        GenerationParams(max_new_tokens=4, temperature=0.0),
    )
    stream = registry.stream(request)
    pieces = [piece async for piece in stream]
    assert stream.stats is not None and "".join(pieces) == stream.stats.text
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_gpt2_dir)
    expected = "system: Be brief.\nuser: Hi\nassistant: Hello!\nuser: Tell me more\nassistant:"
    assert tokenizer.decode(build_prompt_ids(tokenizer, request)) == expected
    assert stream.stats.prompt_tokens == len(tokenizer(expected)["input_ids"])


def test_a_model_without_a_template_takes_one_prompt(tiny_gpt2_dir: Path) -> None:
    plain = AutoTokenizer.from_pretrained(tiny_gpt2_dir)
    conversation = GenerationRequest(
        (ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello"), ChatMessage("user", "More"))
    )
    with pytest.raises(InvalidInput, match="one prompt, not a conversation"):
        build_prompt_ids(plain, conversation)


async def test_an_empty_conversation_is_invalid(registry: ModelRegistry) -> None:
    for request in (
        GenerationRequest(()),
        GenerationRequest((ChatMessage("user", "Hi"), ChatMessage("user", "  "))),
    ):
        with pytest.raises(InvalidInput, match="prompt is empty"):
            await registry.stream(request).collect()
    with pytest.raises(ValueError):
        ChatMessage("narrator", "x")  # type: ignore[arg-type]
