"""Registry behaviour: single loads, readiness, fail-fast, overrides and hot swap, shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from models import loading
from models.errors import InvalidModelRef, ModelUnavailable, QueueFull
from models.registry import ModelRegistry
from models.specs import GenerationParams, Task, default_spec
from tests.support import models as tiny_models
from tests.support.loaders import CountingLoader
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def second_sentiment_dirs(tiny_models_root: Path) -> tuple[Path, Path]:
    """Two more sentiment checkpoints (different seeds) inside the allowed root."""
    b = tiny_models_root / "sentiment-b"
    c = tiny_models_root / "sentiment-c"
    if not b.exists():
        tiny_models.build_tiny_sentiment(b, seed=1)
    if not c.exists():
        tiny_models.build_tiny_sentiment(c, seed=2)
    return b, c


async def test_many_concurrent_requests_trigger_exactly_one_load(
    tiny_specs: dict, tiny_models_root: Path
) -> None:
    loader = CountingLoader(delay_s=0.3)
    reg = ModelRegistry(
        tiny_specs, allowed_roots=[tiny_models_root], torch_threads=1, loader=loader
    )
    try:
        assert reg.status(Task.SENTIMENT).state == "not loaded"
        requests = [asyncio.ensure_future(reg.classify(f"text {i}")) for i in range(64)]
        await wait_until(lambda: bool(loader.calls), what="the load to start")
        assert reg.status(Task.SENTIMENT).state == "loading"
        results = await asyncio.gather(*requests)
        assert len(results) == 64
        assert loader.calls == [str(tiny_specs[Task.SENTIMENT].model_id)]
        status = reg.status(Task.SENTIMENT)
        assert status.state == "ready" and status.load_seconds is not None
        assert status.source == "local"
        # Other tasks stay unloaded until used.
        assert reg.status(Task.NER).state == "not loaded"
    finally:
        await reg.close()


async def test_unknown_hub_model_fails_fast_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = default_spec(Task.SENTIMENT, "nobody-here/definitely-not-a-real-model")
    loader = CountingLoader()
    reg = ModelRegistry([spec], torch_threads=1, loader=loader)
    try:
        started = time.perf_counter()
        with pytest.raises(ModelUnavailable) as info:
            await reg.classify("hello")
        assert time.perf_counter() - started < 10
        message = str(info.value)
        assert "nobody-here/definitely-not-a-real-model" in message
        assert "HF_HUB_OFFLINE" in message and "HFCORD_SENTIMENT_MODEL" in message
        status = reg.status(Task.SENTIMENT)
        assert status.state == "failed" and status.reason == message
        # Within the retry window the failure is answered at once, without a new load.
        assert len(loader.calls) == 1
        with pytest.raises(ModelUnavailable):
            await reg.classify("hello")
        assert len(loader.calls) == 1
    finally:
        await reg.close()


async def test_unreachable_hub_is_reported_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def unreachable(self: Any, repo_id: str, **kwargs: Any) -> Any:
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(loading, "hub_offline", lambda: False)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", unreachable)
    spec = default_spec(Task.SENTIMENT, "someone/some-model")
    with pytest.raises(ModelUnavailable, match="hub cannot be reached") as info:
        loading.probe_hub(spec)
    assert "someone/some-model" in str(info.value)


async def test_missing_hub_repository_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    def missing(self: Any, repo_id: str, **kwargs: Any) -> Any:
        error = RepositoryNotFoundError.__new__(RepositoryNotFoundError)
        Exception.__init__(error, "404")
        raise error

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", missing)
    with pytest.raises(ModelUnavailable, match="no model someone/typo on the Hugging Face hub"):
        loading.probe_hub(default_spec(Task.NER, "someone/typo"))


async def test_a_folder_that_is_not_a_model_fails_with_a_reason(
    tiny_specs: dict, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    reg = ModelRegistry(
        [default_spec(Task.QA, str(empty))], allowed_roots=[tmp_path], torch_threads=1
    )
    try:
        with pytest.raises(ModelUnavailable, match=r"no config\.json"):
            await reg.answer("Who?", "Bob.")
        assert reg.status(Task.QA).state == "failed"
    finally:
        await reg.close()


async def test_bad_configured_ref_fails_only_its_task(
    tiny_specs: dict, tiny_models_root: Path
) -> None:
    specs = dict(tiny_specs)
    specs[Task.NER] = default_spec(Task.NER, "not a valid/ref/at all")
    reg = ModelRegistry(specs, allowed_roots=[tiny_models_root], torch_threads=1)
    try:
        assert reg.status(Task.NER).state == "failed"
        with pytest.raises(InvalidModelRef):
            await reg.ner("hello")
        assert (await reg.classify("hello")).label in tiny_models.SST2_LABELS
    finally:
        await reg.close()


async def test_hot_swap_lets_in_flight_requests_finish_on_the_old_model(
    tiny_specs: dict, tiny_models_root: Path, second_sentiment_dirs: tuple[Path, Path]
) -> None:
    b, c = (str(p) for p in second_sentiment_dirs)
    loader = CountingLoader(slow_forward={b: 0.05})
    reg = ModelRegistry(
        tiny_specs, allowed_roots=[tiny_models_root], torch_threads=1, loader=loader
    )
    guild = 42
    try:
        # One request per batch on B, so its queue drains slowly.
        spec_b = dataclasses.replace(reg.spec_for(Task.SENTIMENT).with_model(b), max_batch=1)
        await reg.set_guild_override(guild, Task.SENTIMENT, spec_b)
        assert reg.status(Task.SENTIMENT, guild).guild_id == guild
        in_flight = [
            asyncio.ensure_future(reg.classify(f"review {i}", guild_id=guild)) for i in range(8)
        ]
        await wait_until(lambda: loader.forwards.get(b, 0) > 0, what="B's first forward pass")
        assert not all(f.done() for f in in_flight)

        await reg.set_guild_override(guild, Task.SENTIMENT, c)  # preloads C, then swaps
        assert not all(f.done() for f in in_flight), "the swap must not wait for old requests"
        assert (await reg.classify("new request", guild_id=guild)).model_id == c

        results = await asyncio.gather(*in_flight)
        assert {r.model_id for r in results} == {b}
        # B is referenced by nothing now: unloaded. The default model is untouched.
        await wait_until(lambda: spec_b.key not in reg._handles, what="B to be unloaded")
        assert (await reg.classify("other server")).model_id == str(
            tiny_specs[Task.SENTIMENT].model_id
        )
        assert {s.model_id for s in reg.statuses(guild) if s.guild_id == guild} == {c}

        await reg.clear_guild_override(guild, Task.SENTIMENT)
        assert reg.spec_for(Task.SENTIMENT, guild) == reg.spec_for(Task.SENTIMENT)
        await wait_until(
            lambda: all(h.spec.model_id != c for h in reg._handles.values()),
            what="C to be unloaded",
        )
    finally:
        await reg.close()


async def test_override_that_cannot_load_keeps_the_current_model(
    tiny_specs: dict, tiny_models_root: Path, tmp_path: Path
) -> None:
    reg = ModelRegistry(tiny_specs, allowed_roots=[tiny_models_root], torch_threads=1)
    broken = tiny_models_root / "broken-model"
    broken.mkdir(exist_ok=True)
    try:
        with pytest.raises(ModelUnavailable):
            await reg.set_guild_override(7, Task.SENTIMENT, str(broken))
        assert reg.spec_for(Task.SENTIMENT, 7) == reg.spec_for(Task.SENTIMENT)
        outside = tmp_path / "outside"
        outside.mkdir()
        with pytest.raises(InvalidModelRef):
            await reg.set_guild_override(7, Task.SENTIMENT, str(outside))
        with pytest.raises(InvalidModelRef):
            await reg.set_guild_override(7, Task.SENTIMENT, str(tiny_models_root / ".." / "x"))
    finally:
        await reg.close()


async def test_generation_stream_survives_a_swap(
    tiny_specs: dict, tiny_models_root: Path, tiny_gpt2_dir: Path, tiny_chat_gpt2_dir: Path
) -> None:
    reg = ModelRegistry(tiny_specs, allowed_roots=[tiny_models_root], torch_threads=1)
    guild = 9
    try:
        await reg.set_guild_override(guild, Task.GENERATION, str(tiny_gpt2_dir))
        stream = reg.generate("Hello", GenerationParams(max_new_tokens=16, seed=4), guild_id=guild)
        first = await stream.__anext__()
        await reg.set_guild_override(guild, Task.GENERATION, str(tiny_chat_gpt2_dir))
        rest = [piece async for piece in stream]
        assert stream.stats is not None and stream.stats.model_id == str(tiny_gpt2_dir)
        assert first + "".join(rest) == stream.stats.text
        await wait_until(
            lambda: all(h.spec.model_id != str(tiny_gpt2_dir) for h in reg._handles.values()),
            what="the swapped-out model to be unloaded",
        )
        after = await reg.generate(
            "Hi", GenerationParams(max_new_tokens=2), guild_id=guild
        ).collect()
        assert after.model_id == str(tiny_chat_gpt2_dir)
    finally:
        await reg.close()


async def test_queue_full_through_the_registry(tiny_specs: dict, tiny_models_root: Path) -> None:
    spec = dataclasses.replace(tiny_specs[Task.SENTIMENT], max_batch=1, queue_depth=2)
    sentiment_dir = spec.model_id
    loader = CountingLoader(slow_forward={sentiment_dir: 0.1})
    reg = ModelRegistry([spec], allowed_roots=[tiny_models_root], torch_threads=1, loader=loader)
    try:
        await reg.preload()
        batcher = reg._handles[spec.key].batcher
        assert batcher is not None
        running = [asyncio.ensure_future(reg.classify("first"))]
        # The first is in the forward pass; two more fill the queue.
        await wait_until(lambda: loader.forwards.get(sentiment_dir, 0) > 0, what="a forward")
        running += [asyncio.ensure_future(reg.classify(f"t{i}")) for i in range(2)]
        await wait_until(lambda: batcher.waiting == 2, what="two queued requests")
        with pytest.raises(QueueFull) as info:
            await reg.classify("one too many")
        assert info.value.position == 3 and info.value.eta_s > 0
        assert len(await asyncio.gather(*running)) == 3
    finally:
        await reg.close()


async def test_close_fails_waiting_requests_and_refuses_new_ones(
    tiny_specs: dict, tiny_models_root: Path
) -> None:
    sentiment_dir = str(tiny_specs[Task.SENTIMENT].model_id)
    loader = CountingLoader(slow_forward={sentiment_dir: 0.2})
    reg = ModelRegistry(
        tiny_specs, allowed_roots=[tiny_models_root], torch_threads=1, loader=loader
    )
    await reg.preload([Task.SENTIMENT])
    pending = [asyncio.ensure_future(reg.classify(f"t{i}")) for i in range(40)]
    await wait_until(lambda: loader.forwards.get(sentiment_dir, 0) > 0, what="a forward")
    await reg.close()
    outcomes = await asyncio.gather(*pending, return_exceptions=True)
    assert any(isinstance(o, ModelUnavailable) for o in outcomes)
    with pytest.raises(ModelUnavailable):
        await reg.classify("after close")


async def test_preload_and_statuses(tiny_specs: dict, tiny_models_root: Path) -> None:
    reg = ModelRegistry(tiny_specs, allowed_roots=[tiny_models_root], torch_threads=1)
    try:
        statuses = await reg.preload()
        assert [s.task for s in statuses] == [str(t) for t in tiny_specs]
        assert all(s.state == "ready" and s.guild_id is None for s in statuses)
    finally:
        await reg.close()
