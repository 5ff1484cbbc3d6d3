"""Registry limits and faults: long jobs share the device thread, /ask work is capped, servers'
own models are capped (least recently used unloaded first) and fall back to the default model
when their folder vanishes or breaks; users never see a host path."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
from pathlib import Path

import pytest

from models import registry as registry_module
from models.errors import ModelError, ModelsBusy, ModelUnavailable
from models.registry import ModelRegistry
from models.specs import ModelSpec, Task
from tests.support import models as tiny_models
from tests.support.loaders import CountingLoader
from tests.support.waiting import wait_until

# About 10,000 tokens: some 40 reader windows of the tiny QA model.
LONG_CONTEXT = " ".join(["The tower stands in Paris and was finished in 1889."] * 900)


@pytest.fixture(scope="module")
def model_copies(tiny_models_root: Path) -> tuple[Path, Path]:
    """Two more sentiment checkpoints (different seeds) inside the allowed root."""
    b = tiny_models_root / "limits-sentiment-b"
    c = tiny_models_root / "limits-sentiment-c"
    if not b.exists():
        tiny_models.build_tiny_sentiment(b, seed=1)
    if not c.exists():
        tiny_models.build_tiny_sentiment(c, seed=2)
    return b, c


async def test_a_sentiment_request_finishes_while_a_long_question_is_still_read(
    tiny_specs: dict, tiny_models_root: Path
) -> None:
    qa_dir = tiny_specs[Task.QA].model_id
    # One window per forward pass, each pass slowed: the question takes ~40 passes.
    qa = dataclasses.replace(tiny_specs[Task.QA], forward_batch=1)
    loader = CountingLoader(slow_forward={qa_dir: 0.05})
    reg = ModelRegistry(
        [qa, tiny_specs[Task.SENTIMENT]],
        allowed_roots=[tiny_models_root],
        torch_threads=1,
        loader=loader,
    )
    try:
        await reg.preload()
        question = asyncio.ensure_future(reg.answer("When was the tower finished?", LONG_CONTEXT))
        await wait_until(lambda: loader.forwards.get(qa_dir, 0) >= 2, what="the question's passes")
        result = await reg.classify("what a lovely day")
        assert result.label in tiny_models.SST2_LABELS
        assert not question.done(), "the sentiment request waited for the whole question"
        passes_before = loader.forwards[qa_dir]
        answer = await question
        assert loader.forwards[qa_dir] > passes_before + 10  # it was far from done
        assert answer.read_chars is None  # read whole: under the window cap
    finally:
        await reg.close()


async def test_a_question_reads_at_most_max_windows_and_says_where_it_stopped(
    tiny_specs: dict, tiny_models_root: Path
) -> None:
    qa_dir = tiny_specs[Task.QA].model_id
    qa = dataclasses.replace(tiny_specs[Task.QA], forward_batch=1, max_windows=3)
    loader = CountingLoader(slow_forward={qa_dir: 0.001})
    reg = ModelRegistry([qa], allowed_roots=[tiny_models_root], torch_threads=1, loader=loader)
    try:
        long = await reg.answer("When was the tower finished?", LONG_CONTEXT)
        assert loader.forwards[qa_dir] == 3  # three windows, no more
        assert long.read_chars is not None and 0 < long.read_chars < len(LONG_CONTEXT) // 10
        assert all(answer.end <= long.read_chars for answer in long.answers)
        short = await reg.answer("Where is it?", "The tower stands in Paris.")
        assert short.read_chars is None
    finally:
        await reg.close()


async def test_servers_own_models_are_capped_least_recently_used_first(
    tiny_specs: dict, tiny_models_root: Path, model_copies: tuple[Path, Path]
) -> None:
    b, c = (str(p) for p in model_copies)
    loader = CountingLoader()
    reg = ModelRegistry(
        tiny_specs,
        allowed_roots=[tiny_models_root],
        torch_threads=1,
        loader=loader,
        max_resident_overrides=1,
    )
    try:
        default = await reg.classify("the default model")  # defaults never count
        await reg.set_guild_override(1, Task.SENTIMENT, b, display_name="job #1")
        assert (await reg.classify("x", guild_id=1)).model_id == b
        await reg.set_guild_override(2, Task.SENTIMENT, c, display_name="job #2")
        # Loading C made room by unloading B, the least recently used (and idle) one.
        assert reg.status(Task.SENTIMENT, 1).state == "not loaded"
        assert reg.status(Task.SENTIMENT, 2).state == "ready"
        assert reg.status(Task.SENTIMENT).state == "ready"
        # B loads again on demand, which unloads C.
        assert (await reg.classify("again", guild_id=1)).model_id == b
        assert loader.calls.count(b) == 2
        assert reg.status(Task.SENTIMENT, 2).state == "not loaded"
        assert (await reg.classify("default again")).model_id == default.model_id
        assert loader.calls.count(default.model_id) == 1
    finally:
        await reg.close()


async def test_when_every_servers_model_is_busy_another_one_waits_its_turn(
    tiny_specs: dict, tiny_models_root: Path, model_copies: tuple[Path, Path]
) -> None:
    b, c = (str(p) for p in model_copies)
    loader = CountingLoader(slow_forward={b: 0.05})
    reg = ModelRegistry(
        tiny_specs,
        allowed_roots=[tiny_models_root],
        torch_threads=1,
        loader=loader,
        max_resident_overrides=1,
    )
    try:
        spec_b = dataclasses.replace(reg.spec_for(Task.SENTIMENT).with_model(b), max_batch=1)
        await reg.set_guild_override(1, Task.SENTIMENT, spec_b)
        await reg.set_guild_override(2, Task.SENTIMENT, c, preload=False)
        busy = [asyncio.ensure_future(reg.classify(f"t{i}", guild_id=1)) for i in range(6)]
        await wait_until(lambda: loader.forwards.get(b, 0) > 0, what="B's first pass")
        with pytest.raises(ModelsBusy, match="try again in a minute"):
            await reg.classify("server 2", guild_id=2)
        assert not all(f.done() for f in busy)
        await asyncio.gather(*busy)
        assert (await reg.classify("server 2", guild_id=2)).model_id == c
    finally:
        await reg.close()


def _promotable_copy(source: Path, root: Path, name: str) -> Path:
    target = root / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    return target


async def test_a_promoted_folder_that_disappears_falls_back_to_the_default_model(
    tiny_specs: dict, tiny_sentiment_dir: Path, tmp_path: Path
) -> None:
    folder = _promotable_copy(tiny_sentiment_dir, tmp_path, "12")
    reg = ModelRegistry(
        tiny_specs, allowed_roots=[tmp_path], torch_threads=1, retry_failed_after_s=0.0
    )
    default_id = str(tiny_specs[Task.SENTIMENT].model_id)
    try:
        # As at start: promotions are restored without loading them.
        await reg.set_guild_override(
            5, Task.SENTIMENT, str(folder), preload=False, display_name="fine-tuned job #12"
        )
        shutil.rmtree(folder)
        result = await reg.classify("still answered", guild_id=5)
        assert result.model_id == default_id
        status = reg.status(Task.SENTIMENT, 5)
        assert status.guild_id == 5 and status.state == "failed"
        assert status.name == "fine-tuned job #12" and status.reason is not None
        assert str(tmp_path) not in status.reason and "12" not in status.reason.replace("#12", "")
        # Restoring while the folder is gone is accepted too; the default serves meanwhile.
        await reg.set_guild_override(
            6, Task.SENTIMENT, str(folder), preload=False, display_name="fine-tuned job #12"
        )
        assert (await reg.classify("x", guild_id=6)).model_id == default_id
        assert reg.status(Task.SENTIMENT, 6).state == "failed"
        # When the folder is back, the next request after the retry delay is served by it.
        _promotable_copy(tiny_sentiment_dir, tmp_path, "12")
        assert (await reg.classify("back", guild_id=6)).model_id == str(folder)
        assert reg.status(Task.SENTIMENT, 6).state == "ready"
    finally:
        await reg.close()


async def test_a_corrupt_promoted_model_falls_back_and_its_error_names_no_path(
    tiny_specs: dict, tiny_sentiment_dir: Path, tmp_path: Path
) -> None:
    folder = _promotable_copy(tiny_sentiment_dir, tmp_path, "13")
    (folder / "config.json").write_text("{ this is not json", encoding="utf-8")
    reg = ModelRegistry(tiny_specs, allowed_roots=[tmp_path], torch_threads=1)
    try:
        with pytest.raises(ModelUnavailable) as refused:  # promoting it: refused, said plainly
            await reg.set_guild_override(7, Task.SENTIMENT, str(folder), display_name="job #13")
        assert "job #13" in str(refused.value) and str(tmp_path) not in str(refused.value)
        assert "this is not json" not in str(refused.value)

        await reg.set_guild_override(
            7, Task.SENTIMENT, str(folder), preload=False, display_name="job #13"
        )
        result = await reg.classify("answered anyway", guild_id=7)
        assert result.model_id == str(tiny_specs[Task.SENTIMENT].model_id)
        status = reg.status(Task.SENTIMENT, 7)
        assert status.state == "failed" and status.reason is not None
        assert str(tmp_path) not in status.reason and "not json" not in status.reason
    finally:
        await reg.close()


async def test_errors_and_statuses_name_local_models_by_their_folder_not_their_path(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "operators-models" / "my-sentiment"
    reg = ModelRegistry(
        [ModelSpec(Task.SENTIMENT, str(missing))], allowed_roots=[tmp_path], torch_threads=1
    )
    try:
        with pytest.raises(ModelError) as info:
            await reg.classify("hello")
        assert "my-sentiment" in str(info.value) and str(tmp_path) not in str(info.value)
        status = reg.status(Task.SENTIMENT)
        assert status.name == "my-sentiment" and status.model_id == str(missing)
        assert status.reason is not None and str(tmp_path) not in status.reason
    finally:
        await reg.close()


async def test_a_failing_unload_is_logged_and_the_task_is_held_until_it_ends(
    tiny_specs: dict,
    tiny_models_root: Path,
    model_copies: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    b, c = (str(p) for p in model_copies)

    def broken(device: str) -> None:
        raise RuntimeError("freeing memory failed")

    monkeypatch.setattr(registry_module, "_release_memory", broken)
    reg = ModelRegistry(tiny_specs, allowed_roots=[tiny_models_root], torch_threads=1)
    try:
        await reg.set_guild_override(3, Task.SENTIMENT, b)
        with caplog.at_level(logging.ERROR, logger="models.background"):
            await reg.set_guild_override(3, Task.SENTIMENT, c)  # B is unloaded
            assert reg._background.running == 1
            await wait_until(lambda: reg._background.running == 0, what="the unload to end")
        failures = [r for r in caplog.records if r.name == "models.background"]
        assert len(failures) == 1 and "unload:" in failures[0].getMessage()
        assert failures[0].exc_info is not None
    finally:
        await reg.close()
