"""Real pretrained small models from PyPI through the registry (mechanics, not accuracy)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from models.registry import ModelRegistry
from models.specs import GenerationParams, Task, default_spec
from tests.support.data import shared_file
from tests.support.models import minilm_dir, smollm2_gguf

pytestmark = pytest.mark.slow


def sst2_sentences(n: int) -> list[str]:
    lines = shared_file("sst2", "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [line.split("\t", 1)[1] for line in lines[:n]]


def squad_article() -> tuple[str, list[dict]]:
    """One SQuAD article's paragraphs joined (several QA windows long) and its questions."""
    data = json.loads(shared_file("squad", "dev-v1.1-part-a.json").read_text("utf-8"))
    article = data["data"][0]
    paragraphs = article["paragraphs"][:12]
    return "\n\n".join(p["context"] for p in paragraphs), [q for p in paragraphs for q in p["qas"]]


async def test_minilm_classification_head_batches_sst2() -> None:
    spec = default_spec(Task.SENTIMENT, str(minilm_dir()))
    reg = ModelRegistry([spec], torch_threads=2)
    try:
        sentences = sst2_sentences(48)
        results = await asyncio.gather(*(reg.classify(s, top_k=2) for s in sentences))
        handle = reg._handles[spec.key]
        assert handle.batcher is not None and handle.batcher.batches_run < len(sentences)
        for result in results:
            assert {s.label for s in result.scores} == {"LABEL_0", "LABEL_1"}
            assert sum(s.score for s in result.scores) == pytest.approx(1.0, abs=1e-4)
        # Batched and one-at-a-time agree (padding must not change the answer).
        alone = await reg.classify(sentences[3], top_k=2)
        assert alone.score == pytest.approx(results[3].score, abs=1e-4)
    finally:
        await reg.close()


async def test_minilm_qa_head_over_a_long_squad_article() -> None:
    context, questions = squad_article()
    spec = default_spec(Task.QA, str(minilm_dir()))
    reg = ModelRegistry([spec], torch_threads=2)
    try:
        from transformers import AutoTokenizer

        from models.qa import encode_qa

        windows = encode_qa(
            AutoTokenizer.from_pretrained(minilm_dir()), questions[0]["question"], context
        )
        assert len(windows["input_ids"]) >= 3
        results = await asyncio.gather(
            *(reg.answer(q["question"], context, top_k=2) for q in questions[:8])
        )
        for result in results:
            assert 1 <= len(result.answers) <= 2
            for answer in result.answers:
                assert answer.text == context[answer.start : answer.end] and answer.text.strip()
                assert 0 < answer.score <= 1
        with_null = await reg.answer(
            questions[0]["question"], context, top_k=3, handle_impossible_answer=True
        )
        assert any(a.is_empty for a in with_null.answers) or len(with_null.answers) == 3
    finally:
        await reg.close()


async def test_minilm_token_classification_head() -> None:
    spec = default_spec(Task.NER, str(minilm_dir()))
    reg = ModelRegistry([spec], torch_threads=2)
    try:
        text = "Angela Merkel met Emmanuel Macron in Berlin on Tuesday."
        result = await reg.ner(text)
        for entity in result.entities:
            assert text[entity.start : entity.end] == entity.word
    finally:
        await reg.close()


@pytest.fixture(scope="module")
def smollm2() -> Path:
    return smollm2_gguf()


async def test_smollm2_gguf_generates_with_its_chat_template(smollm2: Path) -> None:
    spec = default_spec(
        Task.GENERATION, str(smollm2.parent), gguf_file=smollm2.name, max_new_tokens=48
    )
    reg = ModelRegistry([spec], torch_threads=2)
    try:
        statuses = await reg.preload()
        assert statuses[0].state == "ready", statuses[0].reason
        loaded = reg._handles[spec.key].loaded
        assert loaded is not None and loaded.tokenizer.chat_template
        plain_prompt_tokens = len(loaded.tokenizer("What is the capital of France?")["input_ids"])

        stream = reg.generate(
            "What is the capital of France?", GenerationParams(temperature=0, max_new_tokens=24)
        )
        pieces = [piece async for piece in stream]
        stats = stream.stats
        assert stats is not None
        assert "".join(pieces) == stats.text and stats.text.strip()
        assert stats.prompt_tokens > plain_prompt_tokens  # the chat template wrapped it
        assert stats.finish_reason in {"length", "stop"}
        assert "Paris" in stats.text

        cancel = asyncio.Event()
        cancelled = reg.generate(
            "Count to one hundred.", GenerationParams(max_new_tokens=48), cancel=cancel
        )
        async for _ in cancelled:
            cancel.set()
        assert cancelled.stats is not None and cancelled.stats.finish_reason == "cancelled"
        assert cancelled.stats.new_tokens < 48
    finally:
        await reg.close()


def test_smollm2_gguf_streams_decoded_together_match_each_alone(smollm2: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.support.generation import alone, greedy, run_schedule

    folder, name = smollm2.parent, smollm2.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name).eval()
    requests = [greedy("The capital of France is", 8), greedy("Water boils at", 6)]
    # The second joins two steps in, while the first decodes.
    outcomes, decoder = run_schedule(model, tokenizer, [(0, requests[0]), (2, requests[1])])
    assert decoder.widest == 2  # a GGUF model's cache batches too
    for request, outcome in zip(requests, outcomes, strict=True):
        assert outcome.stats.text == alone(model, tokenizer, request).text
