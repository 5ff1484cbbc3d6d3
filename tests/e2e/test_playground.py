"""The playground: typed commands reach the real bot and its replies are printed."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from bot.playground import Playground, Session
from bot.settings import Settings

REPO = Path(__file__).resolve().parents[2]


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


def test_python_m_bot_playground_answers_help_and_exits_0(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("HFCORD_") and k != "DISCORD_TOKEN"
    }
    env.update(HFCORD_DATA_DIR=str(tmp_path / "data"), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-m", "bot", "playground", "--env-file", str(tmp_path / "absent.env")],
        input="/help\n",
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "hfcord commands" in result.stdout and "/sentiment" in result.stdout
