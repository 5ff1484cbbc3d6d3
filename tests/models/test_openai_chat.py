"""The OpenAI-compatible generation runner against a fake server: streaming, what it sends, and
every engine fault ending in one sentence (retries, timeouts, circuit breaker, bad replies)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from models.engines import Engine
from models.errors import EngineUnavailable
from models.requests import ChatMessage, GenerationParams, GenerationRequest
from models.results import GenerationStats
from models.runners.base import EngineRunner, StreamRunner
from models.runners.openai_chat import OpenAIChatRunner
from models.specs import ModelSpec, Task, default_spec
from tests.support.engines import free_port
from tests.support.fake_engine import FakeEngine, Hang, Raw, Status, Stream
from tests.support.waiting import wait_until

SECRET = "sk-test-secret-0123456789"


def engine_spec(base_url: str, model: str = "fake-model", **engine: Any) -> ModelSpec:
    values: dict[str, Any] = {"backoff_s": 0.01, "breaker_pause_s": 1.0, **engine}
    return default_spec(
        Task.GENERATION,
        model,
        engine=Engine("openai", base_url, **values),
        max_new_tokens=50,
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeEngine]:
    async with FakeEngine() as engine:
        yield engine


@pytest.fixture
async def runner(fake: FakeEngine) -> AsyncIterator[OpenAIChatRunner]:
    made = OpenAIChatRunner(engine_spec(fake.base_url))
    yield made
    await made.aclose()


def prompt(text: str = "Say hello", **params: Any) -> GenerationRequest:
    return GenerationRequest.from_prompt(text, GenerationParams(**params))


async def collect(runner: OpenAIChatRunner, request: GenerationRequest) -> GenerationStats:
    return await runner.open(request, None).collect()


# ----------------------------------------------------------------- streaming


async def test_streams_pieces_and_reports_the_servers_usage(
    runner: OpenAIChatRunner, fake: FakeEngine
) -> None:
    stream = runner.open(prompt(), None)
    pieces = [piece async for piece in stream]
    assert pieces == ["Hello", " there", ",", " friend", "."]
    stats = stream.stats
    assert stats is not None
    assert stats.text == "Hello there, friend."
    assert (stats.prompt_tokens, stats.new_tokens) == (7, 5)
    assert stats.finish_reason == "stop"
    assert stats.model_id == "fake-model" and stats.model_name == "fake-model"
    assert stats.seconds > 0
    assert isinstance(runner, StreamRunner) and isinstance(runner, EngineRunner)


async def test_sends_the_conversation_for_the_server_to_template(
    runner: OpenAIChatRunner, fake: FakeEngine
) -> None:
    request = GenerationRequest(
        (
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "Hi"),
            ChatMessage("assistant", "Hello!"),
            ChatMessage("user", "Name a colour"),
        ),
        GenerationParams(max_new_tokens=500, temperature=0.5, top_p=0.9, seed=3),
    )
    await collect(runner, request)
    body = fake.requests[0]
    assert body["model"] == "fake-model"
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Name a colour"},
    ]
    assert body["stream"] is True
    assert body["max_tokens"] == 50  # clamped to the spec's max_new_tokens
    assert (body["temperature"], body["top_p"], body["seed"]) == (0.5, 0.9, 3)
    assert body["stream_options"] == {"include_usage": True}
    assert fake.headers[0]["Authorization"] == "Bearer no-key-configured"


async def test_greedy_is_temperature_zero(runner: OpenAIChatRunner, fake: FakeEngine) -> None:
    await collect(runner, prompt(temperature=0.0))
    assert fake.requests[0]["temperature"] == 0.0
    assert "top_p" not in fake.requests[0] and "seed" not in fake.requests[0]


async def test_finish_reason_length_and_a_separate_usage_chunk(
    runner: OpenAIChatRunner, fake: FakeEngine
) -> None:
    fake.plan(Stream(["a", "b", "c"], finish="length", usage_chunk=True))
    stats = await collect(runner, prompt())
    assert stats.finish_reason == "length"
    assert (stats.prompt_tokens, stats.new_tokens) == (7, 3)


async def test_a_server_silent_after_the_finish_does_not_hold_the_reply(
    runner: OpenAIChatRunner, fake: FakeEngine
) -> None:
    fake.plan(Stream(["a", "b"], silent_after_finish=True))
    started = time.monotonic()
    stats = await collect(runner, prompt())
    assert time.monotonic() - started < 5  # the trailer wait (2 s), not the read timeout
    assert (stats.text, stats.new_tokens, stats.finish_reason) == ("ab", 2, "stop")


async def test_without_usage_the_tokens_are_the_chunks(
    runner: OpenAIChatRunner, fake: FakeEngine
) -> None:
    fake.plan(Stream(["one", " two", " three"], usage=False))
    stats = await collect(runner, prompt())
    assert (stats.prompt_tokens, stats.new_tokens, stats.text) == (0, 3, "one two three")


async def test_a_server_refusing_stream_options_is_asked_again_without_it(
    runner: OpenAIChatRunner, fake: FakeEngine
) -> None:
    fake.plan(Status(400, "Unrecognized request argument supplied: stream_options"))
    fake.plan(Stream(["x", "y"], usage=False))
    stats = await collect(runner, prompt())
    assert stats.new_tokens == 2
    assert "stream_options" in fake.requests[0] and "stream_options" not in fake.requests[1]
    await collect(runner, prompt())
    assert "stream_options" not in fake.requests[2]  # never again


async def test_the_api_key_is_sent_but_never_shown_or_logged(
    fake: FakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    spec = engine_spec(fake.base_url, api_key=SECRET)
    runner = OpenAIChatRunner(spec)
    caplog.set_level(logging.DEBUG)
    try:
        await collect(runner, prompt())
        fake.plan(Status(401, "bad key"))
        with pytest.raises(EngineUnavailable) as info:
            await collect(runner, prompt())
    finally:
        await runner.aclose()
    assert fake.headers[0]["Authorization"] == f"Bearer {SECRET}"
    assert "refused the bot's API key (HTTP 401)" in str(info.value)
    shown = [repr(spec), repr(spec.engine), str(info.value), repr(runner.health()), caplog.text]
    assert not any(SECRET in text for text in shown)


# ----------------------------------------------------------------- stopping


async def test_stop_closes_the_http_stream_so_the_server_stops(
    runner: OpenAIChatRunner, fake: FakeEngine
) -> None:
    fake.plan(Stream([f" w{i}" for i in range(40)], delay=0.05))
    cancel = asyncio.Event()
    stream = runner.open(prompt(), cancel)
    pieces = []
    async for piece in stream:
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.set()
            stopped_at = time.monotonic()
    assert time.monotonic() - stopped_at < 1.0
    assert stream.stats is not None and stream.stats.finish_reason == "cancelled"
    assert stream.stats.new_tokens == len(pieces) == 3
    await wait_until(lambda: fake.disconnects == 1, timeout=5, what="the server to see it")
    assert fake.pieces_sent < 40 and fake.completed == 0


async def test_stop_while_the_server_is_silent_ends_at_once(
    runner: OpenAIChatRunner, fake: FakeEngine
) -> None:
    fake.plan(Stream(["late"], first_delay=30))
    cancel = asyncio.Event()
    stream = runner.open(prompt(), cancel)
    asyncio.get_running_loop().call_later(0.2, cancel.set)
    started = time.monotonic()
    stats = await stream.collect()
    assert time.monotonic() - started < 1.5
    assert stats.finish_reason == "cancelled" and stats.text == ""


async def test_leaving_the_stream_early_closes_it(
    runner: OpenAIChatRunner, fake: FakeEngine
) -> None:
    fake.plan(Stream([f" w{i}" for i in range(40)], delay=0.05))
    stream = runner.open(prompt(), None)
    async for _ in stream:
        break
    await stream.aclose()
    await wait_until(lambda: fake.disconnects == 1, timeout=5, what="the server to see it")
    assert fake.completed == 0


# ----------------------------------------------------------------- retries


async def test_a_5xx_before_the_first_token_is_tried_again(
    runner: OpenAIChatRunner, fake: FakeEngine
) -> None:
    fake.plan(Status(503), Status(502))
    stats = await collect(runner, prompt())
    assert stats.text == "Hello there, friend."
    assert len(fake.requests) == 3
    assert runner.health().state == "answering"


async def test_a_429_waits_for_the_servers_retry_after(
    runner: OpenAIChatRunner, fake: FakeEngine
) -> None:
    fake.plan(Status(429, "slow down", headers={"Retry-After": "0.4"}))
    stats = await collect(runner, prompt())
    assert stats.new_tokens == 5
    assert fake.request_times[1] - fake.request_times[0] >= 0.35


async def test_a_429_past_the_budget_is_a_sentence_with_the_servers_wait(
    fake: FakeEngine,
) -> None:
    runner = OpenAIChatRunner(engine_spec(fake.base_url, retry_budget_s=1.0))
    fake.plan(Status(429, "slow down", headers={"Retry-After": "20"}))
    try:
        with pytest.raises(EngineUnavailable) as info:
            await collect(runner, prompt())
    finally:
        await runner.aclose()
    host = f"127.0.0.1:{fake.port}"
    assert str(info.value) == f"The generation service at {host} is busy; try again in 20 s."
    assert len(fake.requests) == 1  # 20 s is past the budget: not tried again
    assert runner.health().state == "failing"  # a busy engine does not open the breaker


async def test_repeated_failures_open_the_breaker_then_it_closes_after_the_pause(
    runner: OpenAIChatRunner, fake: FakeEngine
) -> None:
    host = f"127.0.0.1:{fake.port}"
    fake.plan(Status(500), Status(500), Status(500))
    with pytest.raises(EngineUnavailable) as info:
        await collect(runner, prompt())
    assert str(info.value) == (
        f"The generation service at {host} is failing (HTTP 500); try again in 1 s."
    )
    assert len(fake.requests) == 3
    health = runner.health()
    assert health.state == "paused" and health.retry_in_s is not None
    assert health.host == host and health.backend == "openai"
    # While paused: refused at once, without asking the server.
    started = time.monotonic()
    with pytest.raises(EngineUnavailable, match=r"is not answering; try again in 1 s\.$"):
        await collect(runner, prompt())
    assert time.monotonic() - started < 0.1 and len(fake.requests) == 3
    # once the pause is over, the next request goes through
    await wait_until(lambda: runner.health().state != "paused", timeout=5, what="the pause end")
    stats = await collect(runner, prompt())
    assert stats.new_tokens == 5 and runner.health().state == "answering"


async def test_after_the_pause_one_failure_opens_the_breaker_again(
    runner: OpenAIChatRunner, fake: FakeEngine
) -> None:
    fake.plan(Status(500), Status(500), Status(500), Status(503))
    with pytest.raises(EngineUnavailable):
        await collect(runner, prompt())
    await wait_until(lambda: runner.health().state != "paused", timeout=5, what="the pause end")
    with pytest.raises(EngineUnavailable, match="HTTP 503"):
        await collect(runner, prompt())
    assert len(fake.requests) == 4  # no retries: the breaker opened again at once
    assert runner.health().state == "paused"


async def test_a_dead_engine_is_one_sentence_in_well_under_a_second() -> None:
    port = free_port()  # nothing listens there
    runner = OpenAIChatRunner(engine_spec(f"http://127.0.0.1:{port}/v1"))
    started = time.monotonic()
    try:
        with pytest.raises(EngineUnavailable) as info:
            await collect(runner, prompt())
    finally:
        await runner.aclose()
    assert time.monotonic() - started < 1.0
    assert str(info.value) == (
        f"The generation service at 127.0.0.1:{port} is not answering; try again in 1 s."
    )
    assert info.value.host == f"127.0.0.1:{port}" and info.value.retry_in_s is not None
    assert runner.health().state == "paused"


async def test_a_hung_engine_times_out_and_is_tried_again(fake: FakeEngine) -> None:
    runner = OpenAIChatRunner(engine_spec(fake.base_url, read_timeout_s=0.3, max_attempts=2))
    fake.plan(Hang(), Hang())
    started = time.monotonic()
    try:
        with pytest.raises(EngineUnavailable, match="is not answering; try again in"):
            await collect(runner, prompt())
    finally:
        await runner.aclose()
    assert len(fake.requests) == 2
    assert time.monotonic() - started < 3


async def test_no_attempt_starts_past_the_retry_budget(fake: FakeEngine) -> None:
    runner = OpenAIChatRunner(engine_spec(fake.base_url, read_timeout_s=0.3, retry_budget_s=0.2))
    fake.plan(Hang(), Hang(), Hang())
    try:
        with pytest.raises(EngineUnavailable, match="is not answering"):
            await collect(runner, prompt())
    finally:
        await runner.aclose()
    assert len(fake.requests) == 1  # the first attempt alone outlasted the budget


async def test_a_stream_cut_mid_reply_is_not_retried(
    runner: OpenAIChatRunner, fake: FakeEngine
) -> None:
    fake.plan(Stream(["one", " two", " three", " four"], cut_after=2))
    stream = runner.open(prompt(), None)
    pieces = []
    with pytest.raises(EngineUnavailable) as info:
        async for piece in stream:
            pieces.append(piece)
    assert pieces == ["one", " two"]
    assert "stopped answering in the middle of the reply; try again in" in str(info.value)
    assert len(fake.requests) == 1


async def test_an_error_event_before_the_first_token_is_retried_after_it_is_not(
    runner: OpenAIChatRunner, fake: FakeEngine
) -> None:
    fake.plan(Stream(["a"], error_after=0))
    stats = await collect(runner, prompt())
    assert stats.new_tokens == 5 and len(fake.requests) == 2
    fake.plan(Stream(["a", "b"], error_after=1))
    with pytest.raises(EngineUnavailable, match="failed while writing the reply"):
        await collect(runner, prompt())
    assert len(fake.requests) == 3


@pytest.mark.parametrize(
    "lines",
    [
        ["{not json"],
        ['{"id": "x", "object": "chat.completion.chunk", "choices": "oops"}'],
        ['{"choices": [{"index": 0, "delta": {"content": 42}}]}'],
    ],
    ids=["not-json", "choices-not-a-list", "content-not-text"],
)
async def test_a_malformed_chunk_is_a_sentence_not_a_crash(
    runner: OpenAIChatRunner, fake: FakeEngine, lines: list[str]
) -> None:
    fake.plan(Raw(lines))
    with pytest.raises(EngineUnavailable) as info:
        await collect(runner, prompt())
    assert str(info.value) == (
        f"The generation service at 127.0.0.1:{fake.port} sent a reply the bot cannot read; "
        "tell the bot's operator."
    )
    assert len(fake.requests) == 1


async def test_cancel_during_the_back_off_ends_at_once(fake: FakeEngine) -> None:
    runner = OpenAIChatRunner(engine_spec(fake.base_url, backoff_s=2.0))
    fake.plan(Status(503))
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, cancel.set)
    started = time.monotonic()
    try:
        stats = await runner.open(prompt(), cancel).collect()
    finally:
        await runner.aclose()
    assert stats.finish_reason == "cancelled" and time.monotonic() - started < 1.0
    assert len(fake.requests) == 1


# ----------------------------------------------------------------- the model and the address


@pytest.mark.parametrize("code", [400, 404])
async def test_a_model_the_server_does_not_serve_is_named(fake: FakeEngine, code: int) -> None:
    runner = OpenAIChatRunner(engine_spec(fake.base_url, model="no-such-model"))
    fake.plan(Status(code, "The model `no-such-model` does not exist."))
    try:
        with pytest.raises(EngineUnavailable) as info:
            await collect(runner, prompt())
    finally:
        await runner.aclose()
    assert str(info.value) == (
        f"The generation service at 127.0.0.1:{fake.port} does not serve the model "
        "no-such-model; tell the bot's operator."
    )
    assert len(fake.requests) == 1


async def test_a_base_url_without_the_api_is_named(fake: FakeEngine) -> None:
    fake.models_status = 404
    runner = OpenAIChatRunner(engine_spec(fake.base_url))
    fake.plan(Status(404, "Not Found"))
    try:
        with pytest.raises(EngineUnavailable, match=r"no chat-completions API at the configured"):
            await collect(runner, prompt())
    finally:
        await runner.aclose()


async def test_another_refusal_says_so_with_its_status(
    runner: OpenAIChatRunner, fake: FakeEngine
) -> None:
    fake.plan(Status(422, "prompt too long"))
    with pytest.raises(EngineUnavailable) as info:
        await collect(runner, prompt())
    assert str(info.value) == (
        f"The generation service at 127.0.0.1:{fake.port} refused the request (HTTP 422)."
    )


async def test_probe_lists_the_models_and_names_a_missing_one(fake: FakeEngine) -> None:
    good = OpenAIChatRunner(engine_spec(fake.base_url))
    wrong = OpenAIChatRunner(engine_spec(fake.base_url, model="other"))
    try:
        ok = await good.probe()
        bad = await wrong.probe()
    finally:
        await good.aclose()
        await wrong.aclose()
    assert ok.ok and ok.models == ("fake-model",) and ok.host == f"127.0.0.1:{fake.port}"
    assert good.health().state == "answering"
    assert bad.problem == "does not list the model 'other' (it lists: fake-model)"
    assert wrong.health().state == "failing"
    assert wrong.health().detail == (
        f"The generation service at 127.0.0.1:{fake.port} does not serve the model other."
    )


async def test_a_model_listed_with_its_latest_tag_is_served() -> None:
    async with FakeEngine(models=["llama3.2:latest"]) as engine:
        runner = OpenAIChatRunner(engine_spec(engine.base_url, model="llama3.2"))
        try:
            assert (await runner.probe()).ok
        finally:
            await runner.aclose()


async def test_probe_of_a_dead_engine_says_it_cannot_connect() -> None:
    runner = OpenAIChatRunner(engine_spec(f"http://127.0.0.1:{free_port()}/v1"))
    try:
        probe = await runner.probe()
    finally:
        await runner.aclose()
    assert probe.models is None and probe.problem is not None
    assert probe.problem.startswith("cannot connect")
    assert runner.health().state == "failing"


def test_engine_settings_are_checked_and_show_no_secret() -> None:
    engine = Engine("openai", "https://user:pw@engine.example:8443/v1", api_key=SECRET)
    assert engine.host == "engine.example:8443"
    assert SECRET not in repr(engine)
    assert Engine("openai", "http://[::1]:8000/v1").host == "[::1]:8000"
    for bad in ("ftp://x/v1", "localhost:8000", ""):
        with pytest.raises(ValueError, match="base_url"):
            Engine("openai", bad)
    with pytest.raises(ValueError, match="kind"):
        Engine("grpc", "http://x/v1")
    with pytest.raises(ValueError, match="read_timeout_s"):
        Engine("openai", "http://x/v1", read_timeout_s=0)
