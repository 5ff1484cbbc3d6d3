"""Stand-ins for discord.py objects in unit tests: each records the calls made to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import discord


@dataclass
class Recorder:
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class FakeMessage:
    def __init__(self, rec: Recorder, message_id: int = 0) -> None:
        self.rec = rec
        self.id = message_id

    async def edit(self, **kwargs: Any) -> FakeMessage:
        kwargs["message_id"] = self.id
        self.rec.calls.append(("message.edit", kwargs))
        return self

    def to_reference(self, **kwargs: Any) -> tuple[str, int]:
        return ("reference", self.id)


class FakeResponse:
    def __init__(self, rec: Recorder, done: bool = False) -> None:
        self.rec = rec
        self.done = done
        self.type: discord.InteractionResponseType | None = None

    def is_done(self) -> bool:
        return self.done

    async def send_message(self, **kwargs: Any) -> None:
        self.rec.calls.append(("response.send_message", kwargs))
        self.done = True

    async def defer(self, **kwargs: Any) -> None:
        self.rec.calls.append(("response.defer", kwargs))
        self.done = True
        self.type = discord.InteractionResponseType.deferred_channel_message


class FakeFollowup:
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    async def send(self, content: str | None = None, **kwargs: Any) -> FakeMessage:
        kwargs["content"] = content if content is not None else kwargs.get("content")
        self.rec.calls.append(("followup.send", kwargs))
        return FakeMessage(self.rec)


class FakeInteraction:
    def __init__(self, done: bool = False) -> None:
        self.rec = Recorder()
        self.response = FakeResponse(self.rec, done)
        self.followup = FakeFollowup(self.rec)
        self.extras: dict[str, Any] = {}
        self.id = 1

    def is_expired(self) -> bool:
        return False

    async def edit_original_response(self, **kwargs: Any) -> None:
        self.rec.calls.append(("edit_original_response", kwargs))

    async def delete_original_response(self) -> None:
        self.rec.calls.append(("delete_original_response", {}))


class FakeChannel:
    def __init__(self) -> None:
        self.rec = Recorder()

    async def send(self, content: str | None = None, **kwargs: Any) -> FakeMessage:
        kwargs["content"] = content
        self.rec.calls.append(("channel.send", kwargs))
        return FakeMessage(self.rec, len(self.rec.calls))
