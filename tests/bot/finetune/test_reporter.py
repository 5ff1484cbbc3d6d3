"""DiscordJobReporter: job messages go through bot/reply.py; a failed delivery is logged."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import discord
import pytest

from bot.finetune.interfaces import Picture
from bot.finetune.reporter import DiscordJobReporter


class FakeMessage:
    def __init__(self, message_id: int, content: str | None = None) -> None:
        self.id = message_id
        self.content = content
        self.edits: list[dict[str, Any]] = []

    async def edit(self, **kwargs: Any) -> FakeMessage:
        self.edits.append(kwargs)
        return self


class FakeChannel:
    """What the reporter uses of a channel (not cached: reached by id, as a partial one)."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str | None, dict[str, Any]]] = []
        self.partials: dict[int, FakeMessage] = {}
        self.fail = fail

    async def send(self, content: str | None = None, **kwargs: Any) -> FakeMessage:
        if self.fail:
            raise discord.HTTPException(SimpleNamespace(status=403, reason="Forbidden"), "no")
        self.sent.append((content, kwargs))
        return FakeMessage(500 + len(self.sent), content)

    def get_partial_message(self, message_id: int) -> FakeMessage:
        return self.partials.setdefault(message_id, FakeMessage(message_id))


class FakeClient:
    def __init__(self, channel: FakeChannel) -> None:
        self.channel = channel
        self.ready = False

    def get_channel(self, channel_id: int) -> None:
        return None

    def get_partial_messageable(self, channel_id: int) -> FakeChannel:
        return self.channel

    async def wait_until_ready(self) -> None:
        self.ready = True


def _reporter(channel: FakeChannel) -> tuple[DiscordJobReporter, FakeClient]:
    client = FakeClient(channel)
    return DiscordJobReporter(client), client  # type: ignore[arg-type]


async def test_post_sends_without_mentions_and_attaches_the_picture() -> None:
    channel = FakeChannel()
    reporter, client = _reporter(channel)
    await reporter.wait_until_ready()
    assert client.ready
    message_id = await reporter.post(7, "done @everyone", picture=Picture("c.png", b"\x89PNG"))
    assert message_id == 501
    ((content, kwargs),) = channel.sent
    assert content == "done @everyone"
    assert kwargs["allowed_mentions"].everyone is False
    assert kwargs["file"].filename == "c.png"


async def test_edit_replaces_a_message_by_its_ids() -> None:
    channel = FakeChannel()
    reporter, _ = _reporter(channel)
    await reporter.edit(7, 42, "x" * 2500)
    (edit,) = channel.partials[42].edits
    assert edit["allowed_mentions"].everyone is False
    assert edit["content"].endswith(" …") and len(edit["content"]) <= 2000  # one message


async def test_a_failed_post_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    reporter, _ = _reporter(FakeChannel(fail=True))
    assert await reporter.post(7, "hello") is None
    assert "could not post a fine-tuning message in channel 7" in caplog.text
