"""The registry serving models from remote engines: selected by the spec, ready without loading,
health in the statuses, probes, per-server local models on top, closing, and the seam for
another kind of remote runner (a batched one)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

import models.tasks
from models.engines import Engine
from models.errors import EngineUnavailable, ModelUnavailable
from models.registry import ModelRegistry
from models.requests import GenerationParams
from models.runners.openai_chat import OpenAIChatRunner
from models.specs import ModelSpec, Task, default_spec
from models.tasks import task_info
from tests.support.engines import free_port
from tests.support.fake_engine import FakeEngine, KeywordClassifierRunner, Stream
from tests.support.loaders import CountingLoader
from tests.support.waiting import wait_until


def remote_generation(base_url: str, model: str = "fake-model", **limits: Any) -> ModelSpec:
    engine = Engine("openai", base_url, backoff_s=0.01, breaker_pause_s=5.0)
    return default_spec(Task.GENERATION, model, engine=engine, max_batch=16, **limits)


@pytest.fixture
async def fake() -> AsyncIterator[FakeEngine]:
    async with FakeEngine() as engine:
        yield engine


@pytest.fixture
def loader() -> CountingLoader:
    return CountingLoader()


@pytest.fixture
async def remote_registry(
    fake: FakeEngine, tiny_specs: dict, tiny_models_root: Path, loader: CountingLoader
) -> AsyncIterator[ModelRegistry]:
    specs = {**tiny_specs, Task.GENERATION: remote_generation(fake.base_url)}
    reg = ModelRegistry(specs, allowed_roots=[tiny_models_root], torch_threads=1, loader=loader)
    yield reg
    await reg.close()


async def test_an_engine_model_is_ready_at_once_and_streams(
    remote_registry: ModelRegistry, fake: FakeEngine, loader: CountingLoader
) -> None:
    status = remote_registry.status(Task.GENERATION)
    assert (status.state, status.source, status.backend) == ("ready", "engine", "openai")
    assert status.health is not None and status.health.state == "unknown"
    assert status.health.host == f"127.0.0.1:{fake.port}" and status.name == "fake-model"
    stream = remote_registry.generate("Hi", guild_id=5)
    text = "".join([piece async for piece in stream])
    assert text == "Hello there, friend." and stream.stats is not None
    assert stream.stats.new_tokens == 5
    assert loader.calls == []  # nothing loaded in this process
    health = remote_registry.status(Task.GENERATION).health
    assert health is not None and health.state == "answering"
    assert health.first_token_ms is not None
    # The local tasks are untouched.
    assert remote_registry.status(Task.SENTIMENT).backend == "local"
    assert remote_registry.status(Task.SENTIMENT).health is None


async def test_many_streams_are_open_on_the_engine_at_once(
    remote_registry: ModelRegistry, fake: FakeEngine
) -> None:
    fake.plan(*[Stream(["a", "b", "c"], delay=0.2) for _ in range(8)])
    streams = [remote_registry.generate(f"prompt {i}") for i in range(8)]
    tasks = [asyncio.ensure_future(s.collect()) for s in streams]
    await wait_until(lambda: len(fake.requests) == 8, timeout=5, what="8 open streams")
    assert fake.completed == 0  # all eight asked before any finished
    results = await asyncio.gather(*tasks)
    assert [r.text for r in results] == ["abc"] * 8


async def test_probe_engines_refreshes_the_health_shown(
    fake: FakeEngine, tiny_specs: dict, tiny_models_root: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    for url, state in ((fake.base_url, "answering"), (dead, "failing")):
        specs = {**tiny_specs, Task.GENERATION: remote_generation(url)}
        reg = ModelRegistry(specs, allowed_roots=[tiny_models_root], torch_threads=1)
        try:
            (probe,) = await reg.probe_engines()
            health = reg.status(Task.GENERATION).health
            assert health is not None and health.state == state
            assert probe.ok == (state == "answering")
        finally:
            await reg.close()


async def test_an_engine_failure_reaches_the_caller_as_its_sentence(
    tiny_specs: dict, tiny_models_root: Path
) -> None:
    port = free_port()
    specs = {**tiny_specs, Task.GENERATION: remote_generation(f"http://127.0.0.1:{port}/v1")}
    reg = ModelRegistry(specs, allowed_roots=[tiny_models_root], torch_threads=1)
    try:
        with pytest.raises(EngineUnavailable, match=f"at 127.0.0.1:{port} is not answering"):
            await reg.generate("Hi").collect()
        assert reg.status(Task.GENERATION).state == "ready"  # the model itself is fine
        health = reg.status(Task.GENERATION).health
        assert health is not None and health.state == "paused"
    finally:
        await reg.close()


async def test_a_servers_own_model_is_local_on_top_of_an_engine_default(
    remote_registry: ModelRegistry, fake: FakeEngine, tiny_gpt2_dir: Path
) -> None:
    spec = await remote_registry.set_guild_override(7, Task.GENERATION, str(tiny_gpt2_dir))
    assert spec.engine is None and spec.backend == "local"
    limits = task_info(Task.GENERATION).batching  # the task's in-process limits
    assert (spec.max_batch, spec.queue_depth) == (limits["max_batch"], limits["queue_depth"])
    greedy = GenerationParams(max_new_tokens=4, temperature=0.0)
    local = await remote_registry.generate("Hi", greedy, guild_id=7).collect()
    assert local.model_id == str(tiny_gpt2_dir) and fake.requests == []
    other = await remote_registry.generate("Hi", guild_id=8).collect()
    assert other.model_id == "fake-model" and len(fake.requests) == 1
    statuses = {(s.guild_id, s.backend) for s in remote_registry.statuses(7)}
    assert statuses >= {(None, "openai"), (7, "local")}


async def test_close_closes_the_engines_client(
    fake: FakeEngine, tiny_specs: dict, tiny_models_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []
    aclose = OpenAIChatRunner.aclose

    async def spy(self: OpenAIChatRunner) -> None:
        closed.append(self.host)
        await aclose(self)

    monkeypatch.setattr(OpenAIChatRunner, "aclose", spy)
    specs = {**tiny_specs, Task.GENERATION: remote_generation(fake.base_url)}
    reg = ModelRegistry(specs, allowed_roots=[tiny_models_root], torch_threads=1)
    await reg.generate("Hi").collect()
    await reg.close()
    assert closed == [f"127.0.0.1:{fake.port}"]
    with pytest.raises(ModelUnavailable, match="shutting down"):
        await reg.generate("Hi").collect()
    assert fake.completed == 1


async def test_another_remote_runner_is_one_entry_in_the_task_table(
    monkeypatch: pytest.MonkeyPatch, tiny_specs: dict, tiny_models_root: Path
) -> None:
    """The seam: a batched task served by a remote engine (as a Text Embeddings Inference
    classifier would be) needs its runner named in the task table, nothing in the registry."""
    info = models.tasks.TASKS[Task.SENTIMENT]
    remote = dataclasses.replace(
        info,
        remote_runners=MappingProxyType(
            {"openai": "tests.support.fake_engine:KeywordClassifierRunner"}
        ),
    )
    monkeypatch.setattr(
        models.tasks, "TASKS", MappingProxyType({**models.tasks.TASKS, Task.SENTIMENT: remote})
    )
    engine = Engine("openai", "http://classifier.internal:8080")
    specs = {**tiny_specs, Task.SENTIMENT: default_spec(Task.SENTIMENT, "kw", engine=engine)}
    reg = ModelRegistry(specs, allowed_roots=[tiny_models_root], torch_threads=1)
    try:
        results = await asyncio.gather(reg.classify("a good day"), reg.classify("a bad day"))
        assert [r.label for r in results] == ["POSITIVE", "NEGATIVE"]
        runner = KeywordClassifierRunner.made[-1]
        # Batched off the event loop, on the engine's own thread (not the CPU's).
        assert runner.threads and all("engine" in name for name in runner.threads)
        status = reg.status(Task.SENTIMENT)
        assert status.source == "engine" and status.health is not None
        assert status.health.state == "answering"
        assert status.health.host == "classifier.internal:8080"
        (probe,) = await reg.probe_engines()
        assert probe.ok and probe.models == ("kw",)
    finally:
        await reg.close()
    assert runner.closed
