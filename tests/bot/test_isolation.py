"""bot.isolation: a function on untrusted input runs in a bounded child process (issue 10)."""

from __future__ import annotations

import os
import time

import pytest

from bot.isolation import IsolationError, IsolationLimits, run_isolated
from tests.support import isolated


def test_runs_in_another_process_with_an_empty_folder_and_no_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "secret-token")
    monkeypatch.setenv("HFCORD_GENERATION_API_KEY", "secret-key")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    found = run_isolated(isolated.surroundings)
    assert found.pid != os.getpid() and found.parent_pid == os.getpid()
    assert found.cwd != os.getcwd() and found.cwd_entries == ()
    assert not {"DISCORD_TOKEN", "HFCORD_GENERATION_API_KEY", "HF_TOKEN"} & set(found.env_names)
    assert {"PATH", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_IMPLICIT_TOKEN"} <= set(found.env_names)
    assert not os.path.exists(found.cwd)  # the temporary folder goes with the call


def test_arguments_and_result_round_trip() -> None:
    assert run_isolated(isolated.echo, 1, "two", b"3", four=(4.0, None)) == (
        (1, "two", b"3"),
        {"four": (4.0, None)},
    )


def test_a_refusal_comes_back_as_itself_other_failures_as_a_sentence(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(isolated.Refused, match=r"^line 4 has no label$"):
        run_isolated(isolated.refuse, "line 4 has no label", refusals=(isolated.Refused,))
    with pytest.raises(IsolationError) as caught:
        run_isolated(isolated.fail, refusals=(isolated.Refused,))
    assert caught.value.failure == "crash"
    sentence = caught.value.sentence("moods.csv")
    assert sentence.startswith("moods.csv could not be read") and "/srv" not in sentence
    assert "/srv/secret/path" in caplog.text  # the details are for the operator's log
    with pytest.raises(IsolationError, match="crash"):
        run_isolated(isolated.exit_hard)


def test_memory_is_bounded() -> None:
    limits = IsolationLimits(memory_mb=256, timeout_s=60)
    assert run_isolated(isolated.allocate, 32, limits=limits) == 32 * 1024 * 1024
    with pytest.raises(IsolationError) as caught:
        run_isolated(isolated.allocate, 512, limits=limits)
    assert caught.value.failure == "memory"
    assert caught.value.sentence("big.csv", advice="try less data") == (
        "big.csv needs more than 256 MB of memory to read; try less data."
    )


def test_time_is_bounded_by_the_clock_and_the_cpu() -> None:
    started = time.monotonic()
    with pytest.raises(IsolationError) as caught:
        run_isolated(isolated.sleep, 60, limits=IsolationLimits(timeout_s=1.5))
    assert caught.value.failure == "time" and time.monotonic() - started < 20
    assert caught.value.sentence("x.csv").startswith("Reading x.csv took longer than 2 s")
    with pytest.raises(IsolationError) as spun:
        run_isolated(isolated.spin, 60, limits=IsolationLimits(timeout_s=1.0))
    assert spun.value.failure == "time"


def test_a_result_cannot_make_this_process_call_a_function() -> None:
    with pytest.raises(IsolationError, match="crash"):
        run_isolated(isolated.give_a_function)


def test_only_module_level_functions_run_isolated() -> None:
    with pytest.raises(ValueError, match="top level"):
        run_isolated(lambda: None)
