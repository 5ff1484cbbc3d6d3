"""Conversation tests: a registry that records what generation was asked and what it wrote, and
waiting for the bot's answers in a channel of the emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator

from bot.settings import Settings
from bot.sim import DiscordEmulator, SimChannel, SimMessage
from models.registry import ModelRegistry
from models.requests import GenerationRequest
from models.runners.base import CancelFlag
from models.streams import GenerationStream
from tests.support.waiting import wait_until


class RecordingRegistry(ModelRegistry):
    """The real registry, keeping every generation request (``requests``) and the text each
    one produced (``answers``, in the same order once finished)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.requests: list[GenerationRequest] = []
        self.answers: list[str] = []

    def stream(
        self,
        request: GenerationRequest,
        guild_id: int | None = None,
        cancel: CancelFlag | None = None,
    ) -> GenerationStream:
        self.requests.append(request)
        inner = super().stream(request, guild_id, cancel)
        return GenerationStream(lambda outer: self._relay(outer, inner))

    async def _relay(self, outer: GenerationStream, inner: GenerationStream) -> AsyncIterator[str]:
        try:
            async for piece in inner:
                yield piece
            outer.stats = inner.stats
            assert inner.stats is not None
            self.answers.append(inner.stats.text)
        finally:
            await inner.aclose()


def recording_registry(settings: Settings) -> RecordingRegistry:
    """A recording registry for ``settings``' models, as ``bot.app.build_registry`` makes it."""
    return RecordingRegistry(
        settings.model_specs(),
        allowed_roots=settings.allowed_model_roots,
        torch_threads=settings.torch_threads,
        max_resident_overrides=settings.max_loaded_server_models,
    )


def is_answer(emu: DiscordEmulator, message: SimMessage) -> bool:
    """A finished chat answer of the bot: its footer shown and its Stop button gone."""
    return (
        message.author is emu.bot_user
        and not message.deleted
        and not message.buttons
        and "\n-# " in message.content
        and emu.interaction_for(message) is None
    )


def answers(emu: DiscordEmulator, channel: SimChannel) -> list[SimMessage]:
    """The bot's finished chat answers in ``channel``, oldest first."""
    return [m for m in channel.messages if is_answer(emu, m)]


async def next_answer(
    emu: DiscordEmulator,
    channel: SimChannel,
    after: SimMessage | None = None,
    *,
    timeout: float = 60.0,
) -> SimMessage:
    """The bot's next finished answer in ``channel`` (after ``after``), once it is final."""
    floor = after.id if after is not None else 0

    def found() -> list[SimMessage]:
        return [m for m in answers(emu, channel) if m.id > floor]

    await wait_until(lambda: bool(found()), timeout=timeout, what=f"an answer in #{channel.name}")
    return found()[0]


def thread_of(message: SimMessage | None) -> SimChannel:
    """The thread started from ``message`` (a /chat's first message)."""
    assert message is not None and message.thread is not None, message
    return message.thread


async def audit_actions(settings: Settings) -> list[str]:
    """Every action in the bot's audit log, oldest first (after the bot has stopped)."""
    from bot.store import Store

    store = await Store.open(settings.database_path)
    try:
        async with store.conn.execute("SELECT action FROM audit_log ORDER BY id") as cursor:
            return [row[0] for row in await cursor.fetchall()]
    finally:
        await store.close()
