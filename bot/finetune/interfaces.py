"""The two narrow interfaces the fine-tuning manager works through.

- :class:`JobReporter`: posting and editing messages in a channel (Discord in the bot,
  `bot.finetune.reporter.DiscordJobReporter`; a recording fake in tests).
- :class:`ModelSwitch`: which model serves a task in one server (the model registry).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from models.specs import Task


@dataclass(frozen=True)
class Picture:
    """An image posted with a message (the training curves)."""

    filename: str
    data: bytes = field(repr=False)


class JobReporter(Protocol):
    """Where jobs are reported. Failures to deliver are logged, never raised."""

    async def wait_until_ready(self) -> None:
        """Return once messages can be delivered (e.g. the gateway is ready)."""
        ...

    async def post(
        self, channel_id: int, text: str, *, picture: Picture | None = None
    ) -> int | None:
        """Post ``text`` in a channel; the new message's id, or None when it couldn't be posted."""
        ...

    async def edit(self, channel_id: int, message_id: int, text: str) -> None:
        """Replace the text of a message posted earlier."""
        ...


class ModelSwitch(Protocol):
    """Per-server model overrides (`models.registry.ModelRegistry` implements them)."""

    async def set_guild_override(
        self,
        guild_id: int,
        task: Task,
        spec: str,
        *,
        preload: bool = True,
        display_name: str | None = None,
    ) -> object:
        """Serve the model at ``spec`` for ``task`` in a server, shown to users as
        ``display_name``; with ``preload`` it loads first and nothing changes if it can't (the
        error is raised)."""
        ...

    async def clear_guild_override(self, guild_id: int, task: Task) -> None:
        """Serve the default model for ``task`` in a server again."""
        ...
