"""The playground: typed commands reach the real bot and its replies are printed; its world
(servers, channels, threads, users) is kept in the data folder between runs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bot.playground import WORLD_FILE, Playground, Session
from bot.settings import Settings
from bot.sim.clock import snowflake_time_ms

REPO = Path(__file__).resolve().parents[2]
NO_CONTEXT = "This channel has no context"


async def run_script(settings: Settings, script: str) -> tuple[int, str]:
    out = io.StringIO()
    playground = Playground(
        settings.model_copy(update={"dev_guild_id": None}), session=Session(), timeout=60
    )
    code = await playground.run(io.StringIO(script), out)
    return code, out.getvalue()


async def test_piped_commands_print_replies_and_streamed_edits(settings: Settings) -> None:
    script = "\n".join(
        [
            "/help",
            "/sentiment text: I love this",
            ":say Ada Lovelace was born in London",
            ":menu Analyze sentiment",
            "/context set text: The Eiffel Tower is in Paris.",
            "/generate prompt: Once upon a time max_tokens: 8",
            ":as admin",
            "/models",
        ]
    )
    code, out = await run_script(settings, script)
    assert code == 0, out
    assert "/generate" in out and "/context set" in out  # /help listed the commands
    assert out.count("[bot] is thinking…") >= 3  # deferred commands
    assert "8 tokens" in out  # the final streamed edit with its footer
    assert "Context set" in out
    assert "member said: Ada Lovelace" in out
    assert "You are now admin." in out
    assert "sentiment" in out and "ready" in out  # /models


async def test_mistakes_are_reported_and_make_the_exit_code_1(settings: Settings) -> None:
    code, out = await run_script(
        settings, "/nope\n/generate max_tokens: 3\n:menu Analyze sentiment\n"
    )
    assert code == 1
    assert "no synced command 'nope'" in out
    assert "option 'prompt' is required" in out
    assert "Post a message with :say first" in out


def python_m_bot_playground(
    data_dir: Path, script: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`python -m bot playground` with default settings on ``data_dir``, fed ``script``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("HFCORD_") and k != "DISCORD_TOKEN"
    }
    env.update(HFCORD_DATA_DIR=str(data_dir), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "bot", "playground", "--env-file", "absent.env", *extra],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=data_dir.parent,
        env=env,
    )


def world_ids(data_dir: Path) -> dict[str, int]:
    named = json.loads((data_dir / WORLD_FILE).read_text(encoding="utf-8"))["named"]
    return {name: int(value) for name, value in named.items()}


def test_python_m_bot_playground_answers_help_and_exits_0(tmp_path: Path) -> None:
    result = python_m_bot_playground(tmp_path / "data", "/help\n")
    assert result.returncode == 0, result.stderr
    assert "hfcord commands" in result.stdout and "/sentiment" in result.stdout


def test_the_next_run_keeps_the_world_and_what_the_bot_stored_for_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = python_m_bot_playground(
        data,
        "/context set text: Lighthouses guide ships.\n"
        ":in thread\n"
        "/context set text: Threads keep their own notes.\n",
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("Context set") == 2
    ids = world_ids(data)

    second = python_m_bot_playground(data, "/context show\n:in thread\n/context show\n")
    assert second.returncode == 0, second.stdout + second.stderr
    in_channel, in_thread = second.stdout.split("Now in #general-thread.")
    assert "Lighthouses guide ships." in in_channel and "Threads keep" not in in_channel
    assert "Threads keep their own notes." in in_thread
    assert NO_CONTEXT not in second.stdout
    assert world_ids(data) == ids


def test_reset_starts_a_new_world_saying_what_it_discards(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert python_m_bot_playground(data, "/context set text: Old notes.\n").returncode == 0
    old = world_ids(data)

    result = python_m_bot_playground(data, "/context show\n", "--reset")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Starting a new world. Discarded: the saved one in" in result.stdout
    assert "2 servers (Test Server, Other Server)" in result.stdout
    assert "Contexts, fine-tuning jobs and promoted models made there stay" in result.stdout
    assert NO_CONTEXT in result.stdout and "Old notes." not in result.stdout
    new = world_ids(data)
    assert set(new.values()).isdisjoint(old.values())
    for snowflake in new.values():  # Discord-shaped: made now, after the old world's ids
        assert snowflake > max(old.values())
        assert abs(snowflake_time_ms(snowflake) - time.time() * 1000) < 120_000


async def test_reset_inside_a_session_starts_a_new_world(settings: Settings) -> None:
    code, out = await run_script(
        settings,
        "/context set text: Before the reset.\n:in thread\n:reset\n/context show\n",
    )
    assert code == 0, out
    before, after = out.split("Starting a new world. Discarded:")
    assert "Context set" in before
    assert NO_CONTEXT in after and "Before the reset." not in after
    assert "> /context show" in after  # still in the thread (of the new world), same user


async def test_a_chat_in_the_playground_follows_its_thread(settings: Settings) -> None:
    script = "\n".join(
        [
            "/chat message: Hello there",
            ":mention How are you?",
            ":reply Tell me more",
            ":say Without the intent this one is not answered",
            ":in dm",
            ":say hi",
        ]
    )
    code, out = await run_script(settings.model_copy(update={"max_new_tokens": 6}), script)
    assert code == 0, out
    assert "started a chat: Hello there" in out
    assert "Now in #Hello there (the chat's thread)." in out
    assert "member said: <@" not in out  # the mention is shown as typed after :mention
    assert "member said: @hfcord How are you?" in out and "member replied: Tell me more" in out
    assert out.count("6 tokens") == 3  # the /chat answer, the mention's and the reply's
    assert "don't answer direct messages" in out
    saved = json.loads((settings.data_dir / WORLD_FILE).read_text(encoding="utf-8"))
    names = [c["name"] for g in saved["guilds"] for c in g["channels"]]
    assert "Hello there" in names  # the chat's thread is kept for the next run
