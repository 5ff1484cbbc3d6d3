"""The real bot in its own process, on an emulator running in the test's process
(bot.sim.external starts it as `python -m bot` does; bot.sim.botprocess follows and kills it)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from bot.sim import DiscordEmulator
from bot.sim.botprocess import BotProcess, child_environment
from bot.sim.external import api_base, gateway_for
from tests.support.waiting import wait_until


def test_addresses_come_from_the_emulators_url() -> None:
    assert api_base("http://127.0.0.1:8123") == "http://127.0.0.1:8123/api/v10"
    assert api_base("http://127.0.0.1:8123/api/v10/") == "http://127.0.0.1:8123/api/v10"
    assert gateway_for("http://127.0.0.1:8123/api/v10") == "ws://127.0.0.1:8123/"
    assert gateway_for("https://example.test") == "wss://example.test/"


def test_the_child_gets_no_settings_or_token_from_the_parent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "parent-token")
    monkeypatch.setenv("HFCORD_DATA_DIR", "/parent/data")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = child_environment({"HFCORD_LOG_LEVEL": "DEBUG"})
    assert "DISCORD_TOKEN" not in env and "HFCORD_DATA_DIR" not in env
    assert env["HFCORD_LOG_LEVEL"] == "DEBUG"
    first, *rest = env["PYTHONPATH"].split(":")
    assert (Path(first) / "bot" / "sim" / "external.py").is_file() and rest == ["/elsewhere"]


def write_settings(folder: Path, emu: DiscordEmulator, models: dict[str, Path]) -> Path:
    env_file = folder / "bot.env"
    env_file.write_text(
        f"DISCORD_TOKEN={emu.token}\n"
        f"HFCORD_DATA_DIR={folder / 'data'}\n"
        f"HFCORD_DEV_GUILD_ID={emu.guild.id}\n"
        f"HFCORD_GENERATION_MODEL={models['gpt2']}\n"
        f"HFCORD_SENTIMENT_MODEL={models['sentiment']}\n"
        f"HFCORD_NER_MODEL={models['ner']}\n"
        f"HFCORD_QA_MODEL={models['qa']}\n"
    )
    return env_file


async def test_bot_process_answers_dies_on_sigkill_and_restarts_on_its_data(
    tmp_path: Path,
    tiny_gpt2_dir: Path,
    tiny_sentiment_dir: Path,
    tiny_ner_dir: Path,
    tiny_qa_dir: Path,
) -> None:
    models = {
        "gpt2": tiny_gpt2_dir,
        "sentiment": tiny_sentiment_dir,
        "ner": tiny_ner_dir,
        "qa": tiny_qa_dir,
    }
    async with DiscordEmulator() as emu:
        env_file = write_settings(tmp_path, emu, models)

        def process(log: str) -> BotProcess:
            return BotProcess(
                api_url=emu.base_url,
                bot_args=["--env-file", str(env_file)],
                cwd=tmp_path,
                log_path=tmp_path / log,
            )

        first = process("bot-1.log")
        await first.start()
        try:
            await emu.wait_synced(timeout=120)
            await emu.wait_ready(timeout=120)
            context = await emu.slash("context set", {"text": "Paris is in France."})
            await context.final(timeout=30)
            assert "Context set" in context.text, context.describe()
            assert first.sample_memory() > 10_000  # KiB: a Python process with discord.py
            first.kill()
            assert await first.wait(30) == -signal.SIGKILL
            await wait_until(lambda: not emu.hub.ready.is_set(), what="the session to drop")
        finally:
            first.kill()

        second = process("bot-2.log")
        await second.start()
        try:
            await wait_until(
                lambda: emu.hub.identify_count == 2 and emu.hub.ready.is_set(),
                timeout=120,
                what="the restarted bot's session",
            )
            shown = await emu.slash("context show")
            await shown.final(timeout=30)
            assert "Paris is in France." in shown.text, shown.describe()  # same data folder
            assert await second.stop(timeout=60) == (0, True)  # SIGTERM: a clean exit
        finally:
            second.kill()
    log = (tmp_path / "bot-2.log").read_text()
    assert " ERROR " not in log, log
