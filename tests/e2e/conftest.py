"""End-to-end fixtures: the real bot (real cogs, tiny local models) logged in to the emulator.

- `emu`: a DiscordEmulator patched into discord.py.
- `settings`: the bot's Settings for a temp data dir, the emulator's guild as dev guild, tiny
  models, no per-user request budget (tests that need one build their own with `make_settings`;
  the in-flight cap keeps its default).
- `hfcord`: the running HFCordBot (setup_hook loaded every cog; commands synced to the dev guild
  and globally, so both emulated servers have them).
- `run_bot(settings, cogs=..., registry=...)`: start another bot (a restart, extra test-only
  cogs, a registry the test keeps, e.g. to record what the models were asked).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bot.app import open_app
from bot.client import HFCordBot
from bot.settings import Settings
from bot.sim import DiscordEmulator
from bot.sim.harness import connected
from models.registry import ModelRegistry
from tests.support.e2e import BotRunner, CogFactory


@pytest.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    async with DiscordEmulator() as emulator:
        with emulator.patch_discord():
            yield emulator


@pytest.fixture
def make_settings(
    emu: DiscordEmulator,
    tmp_path: Path,
    tiny_models_root: Path,
    tiny_gpt2_dir: Path,
    tiny_sentiment_dir: Path,
    tiny_ner_dir: Path,
    tiny_qa_dir: Path,
    tiny_embedding_dir: Path,
) -> Callable[..., Settings]:
    """Settings for the bot under test; keyword overrides use field names."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "discord_token": emu.token,
            "data_dir": tmp_path / "data",
            "dev_guild_id": emu.guild.id,
            "generation_model": str(tiny_gpt2_dir),
            "sentiment_model": str(tiny_sentiment_dir),
            "ner_model": str(tiny_ner_dir),
            "qa_model": str(tiny_qa_dir),
            "embedding_model": str(tiny_embedding_dir),
            "model_roots": (tiny_models_root,),
            "torch_threads": 1,
            "user_budget": 0,
            "log_level": "DEBUG",
        }
        values.update(overrides)
        return Settings.load(env_file=None, **values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def run_bot(emu: DiscordEmulator) -> BotRunner:
    """`async with run_bot(settings, cogs=[...]) as bot:` runs the real bot on the emulator.

    With ``registry`` the bot uses it and leaves it open (the test closes it)."""

    @contextlib.asynccontextmanager
    async def run(
        settings: Settings,
        *,
        cogs: Sequence[CogFactory] = (),
        registry: ModelRegistry | None = None,
    ) -> AsyncIterator[HFCordBot]:
        async with open_app(settings, registry=registry) as bot:
            for make_cog in cogs:
                # Added before login so setup_hook's dev-guild sync includes their commands.
                await bot.add_cog(make_cog(bot))
            async with connected(emu, bot, sync_global=True):
                yield bot

    return run


@pytest.fixture
async def hfcord(run_bot: BotRunner, settings: Settings) -> AsyncIterator[HFCordBot]:
    async with run_bot(settings) as bot:
        yield bot


@pytest.fixture(autouse=True)
def bot_never_pings(emu: DiscordEmulator) -> Iterator[None]:
    """After every e2e test: no message the bot wrote could ping anyone, and every request the
    bot made to the emulator is one it implements (else the test proves less than it seems)."""
    yield
    leaks = [(m, r.content) for m, r in emu.mention_leaks()]
    assert leaks == [], f"bot messages that would ping: {leaks}"
    loose = [
        (m, r.allowed_mentions)
        for m in emu.bot_messages
        for r in m.revisions
        if r.content and not _mentions_disabled(r.allowed_mentions)
    ]
    assert loose == [], f"bot messages sent without AllowedMentions.none(): {loose}"
    assert emu.unhandled_requests == [], [f"{r.method} {r.path}" for r in emu.unhandled_requests]


def _mentions_disabled(allowed: dict[str, Any] | None) -> bool:
    return (
        allowed is not None
        and not allowed.get("parse")
        and not allowed.get("users")
        and not allowed.get("roles")
        and not allowed.get("replied_user")
    )
