"""Continuous batching: streams joining, leaving, stopping and failing while others decode."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from models.continuous import ContinuousDecoder
from models.errors import InvalidInput
from models.generation import GenerationSession
from models.registry import ModelRegistry
from models.requests import ChatMessage, GenerationParams, GenerationRequest
from models.runners.generation import LocalGenerationRunner
from models.specs import Task
from tests.support.generation import alone, greedy, run_schedule, submit

PROMPTS = (
    "Once upon a time",
    "The weather today is",
    "Hello",
    "A much longer prompt with many more words in it than any of the others have",
)


@pytest.fixture(scope="module")
def gpt2(tiny_gpt2_dir: Path) -> tuple[Any, Any]:
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir).eval()
    return model, AutoTokenizer.from_pretrained(tiny_gpt2_dir)


def test_streams_joining_and_leaving_mid_batch_give_the_same_greedy_text(
    gpt2: tuple[Any, Any],
) -> None:
    model, tokenizer = gpt2
    requests = [greedy(PROMPTS[0], 16), greedy(PROMPTS[1], 16), greedy(PROMPTS[2], 4)]
    requests.append(greedy(PROMPTS[3], 16))
    # Two start together, a short one joins at step 3 and leaves at step 6, a long prompt
    # joins at step 5 (while the short one still runs).
    outcomes, decoder = run_schedule(
        model, tokenizer, [(0, requests[0]), (0, requests[1]), (3, requests[2]), (5, requests[3])]
    )
    assert decoder.widest == 4  # all four were decoded in one pass at some point
    for request, outcome in zip(requests, outcomes, strict=True):
        expected = alone(model, tokenizer, request)
        assert outcome.stats.text == expected.text and outcome.stats.text
        assert outcome.stats.new_tokens == expected.new_tokens == request.params.max_new_tokens
        assert "".join(outcome.pieces) == outcome.stats.text


def test_one_pass_per_step_for_all_active_streams(gpt2: tuple[Any, Any]) -> None:
    model, tokenizer = gpt2
    schedule = [(0, greedy(prompt, 10)) for prompt in PROMPTS]
    outcomes, decoder = run_schedule(model, tokenizer, schedule)
    # Each stream's first token comes from its prompt's pass; the 9 others from shared passes.
    assert decoder.passes == 9 and decoder.widest == len(PROMPTS)
    assert all(o.stats.new_tokens == 10 for o in outcomes)


def test_sampling_parameters_stay_per_stream(gpt2: tuple[Any, Any]) -> None:
    model, tokenizer = gpt2
    sampled = GenerationRequest.from_prompt(
        PROMPTS[0], GenerationParams(temperature=1.5, top_p=0.9, seed=11).clamped(12)
    )
    penalised = GenerationRequest.from_prompt(
        PROMPTS[1], GenerationParams(temperature=0.0, repetition_penalty=1.8).clamped(12)
    )
    together, _ = run_schedule(
        model, tokenizer, [(0, sampled), (0, penalised), (0, greedy(PROMPTS[2], 12))]
    )
    assert together[0].stats.text == alone(model, tokenizer, sampled).text
    assert together[1].stats.text == alone(model, tokenizer, penalised).text
    assert together[2].stats.text == alone(model, tokenizer, greedy(PROMPTS[2], 12)).text
    # The penalty made a difference: the same prompt greedy without it repeats itself.
    assert together[1].stats.text != alone(model, tokenizer, greedy(PROMPTS[1], 12)).text


def test_stop_on_one_stream_leaves_the_others_running(gpt2: tuple[Any, Any]) -> None:
    model, tokenizer = gpt2
    requests = [greedy(prompt, 12) for prompt in PROMPTS[:3]]
    outcomes, _ = run_schedule(
        model, tokenizer, [(0, request) for request in requests], stops=[(4, 1)]
    )
    stopped = outcomes[1].stats
    assert stopped.finish_reason == "cancelled" and 0 < stopped.new_tokens < 12
    assert alone(model, tokenizer, requests[1]).text.startswith(stopped.text)
    for i in (0, 2):
        assert outcomes[i].stats.finish_reason == "length"
        assert outcomes[i].stats.text == alone(model, tokenizer, requests[i]).text


def test_a_stream_failing_in_its_sampling_fails_alone(
    gpt2: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tokenizer = gpt2
    choose = GenerationSession.choose

    def failing(self: GenerationSession, logits: Any) -> int:
        if self.prompt_ids == tokenizer(PROMPTS[1])["input_ids"] and len(self.generated) == 3:
            raise RuntimeError("sampling broke")
        return choose(self, logits)

    requests = [greedy(prompt, 10) for prompt in PROMPTS[:3]]
    monkeypatch.setattr(GenerationSession, "choose", failing)
    outcomes, _ = run_schedule(model, tokenizer, [(0, request) for request in requests])
    monkeypatch.undo()
    assert isinstance(outcomes[1].end, RuntimeError)
    assert len(outcomes[1].pieces) <= 3
    for i in (0, 2):
        assert outcomes[i].stats.text == alone(model, tokenizer, requests[i]).text


def test_a_batched_pass_that_fails_is_retried_stream_by_stream(
    gpt2: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tokenizer = gpt2
    long_prompt = len(tokenizer(PROMPTS[3])["input_ids"])
    forward = model.forward

    @functools.wraps(forward)
    def breaks_past_a_position(*args: Any, **kwargs: Any) -> Any:
        # Only the long prompt's stream reaches this position: its passes fail, alone or not.
        positions = kwargs.get("position_ids")
        if positions is not None and int(positions.max()) >= long_prompt + 3:
            raise RuntimeError("this row cannot be computed")
        return forward(*args, **kwargs)

    requests = [greedy(PROMPTS[0], 12), greedy(PROMPTS[3], 12), greedy(PROMPTS[1], 12)]
    expected = [alone(model, tokenizer, request) for request in requests]
    monkeypatch.setattr(model, "forward", breaks_past_a_position)
    outcomes, decoder = run_schedule(model, tokenizer, [(0, request) for request in requests])
    monkeypatch.undo()
    assert isinstance(outcomes[1].end, RuntimeError)
    assert expected[1].text.startswith("".join(outcomes[1].pieces))
    for i in (0, 2):
        assert outcomes[i].stats.text == expected[i].text
    assert decoder.widest == 3


def test_a_bad_prompt_fails_its_stream_only(gpt2: tuple[Any, Any]) -> None:
    model, tokenizer = gpt2
    # The tiny GPT-2 has no chat template: a conversation with an answer in it is refused.
    conversation = GenerationRequest(
        (ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello"), ChatMessage("user", "x")),
        GenerationParams(temperature=0.0).clamped(4),
    )
    outcomes, _ = run_schedule(model, tokenizer, [(0, greedy("Hi", 6)), (2, conversation)])
    assert isinstance(outcomes[1].end, InvalidInput)
    assert outcomes[0].stats.new_tokens == 6


def test_a_stream_stopped_before_it_joins_ends_without_tokens(gpt2: tuple[Any, Any]) -> None:
    model, tokenizer = gpt2
    decoder = ContinuousDecoder(model, tokenizer, model_id="tiny", model_name="tiny")
    outcome = submit(decoder, greedy("Hi", 6))
    outcome.stop.set()
    decoder.run(4)
    assert not decoder.busy
    assert outcome.stats.finish_reason == "cancelled" and outcome.stats.new_tokens == 0


async def test_concurrent_registry_streams_decode_together(registry: ModelRegistry) -> None:
    params = GenerationParams(temperature=0.0, max_new_tokens=16)
    prompts = [f"Story number {n}" for n in range(4)]
    alone_texts = [(await registry.generate(p, params).collect()).text for p in prompts]
    runner = registry._handles[registry.spec_for(Task.GENERATION).key].streamer
    assert isinstance(runner, LocalGenerationRunner)
    together = await asyncio.gather(*(registry.generate(p, params).collect() for p in prompts))
    assert [stats.text for stats in together] == alone_texts
    assert runner.decoder.widest == len(prompts)
    assert not runner.decoder.busy


async def test_stop_through_the_registry_leaves_other_streams_running(
    registry: ModelRegistry,
) -> None:
    params = GenerationParams(temperature=0.0, max_new_tokens=20)
    expected = (await registry.generate("Keep going", params).collect()).text
    cancel = asyncio.Event()
    stopped = registry.generate("Stop me", params, cancel=cancel)
    others = [
        asyncio.ensure_future(registry.generate("Keep going", params).collect()) for _ in range(2)
    ]
    async for _ in stopped:
        cancel.set()
    assert stopped.stats is not None and stopped.stats.finish_reason == "cancelled"
    for stats in await asyncio.gather(*others):
        assert stats.finish_reason == "length" and stats.text == expected
