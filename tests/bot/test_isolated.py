"""Parsing untrusted bytes in a child process: results, refusals, and limits that hold."""

from __future__ import annotations

import os

import pytest

from bot.isolated import IsolatedRefusal, run_isolated

TARGETS = "tests.support.isolated_targets"


async def test_the_result_comes_back_and_no_secret_goes_to_the_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "not-for-children")
    result = await run_isolated(f"{TARGETS}:shout", b"hello", "!")
    assert result["text"] == "HELLO!"
    assert "DISCORD_TOKEN" not in result["environment"]
    assert not {name for name in result["environment"] if name.startswith("HFCORD_")}


async def test_a_refusal_is_the_functions_sentence() -> None:
    with pytest.raises(IsolatedRefusal, match=r"That file has no rows\."):
        await run_isolated(f"{TARGETS}:refuse", b"")


async def test_a_crash_is_a_plain_sentence_without_details() -> None:
    with pytest.raises(IsolatedRefusal) as caught:
        await run_isolated(f"{TARGETS}:crash", b"", what="`data.csv`")
    message = str(caught.value)
    assert "`data.csv`" in message and "KeyError" not in message and "Traceback" not in message


async def test_the_deadline_stops_the_child() -> None:
    with pytest.raises(IsolatedRefusal, match="took too long"):
        await run_isolated(f"{TARGETS}:hang", b"", timeout_s=1.0)


@pytest.mark.skipif(os.name != "posix", reason="the memory cap is an rlimit")
async def test_the_memory_cap_holds() -> None:
    with pytest.raises(IsolatedRefusal, match="too large"):
        await run_isolated(f"{TARGETS}:hoard", b"", memory_bytes=512 << 20)
