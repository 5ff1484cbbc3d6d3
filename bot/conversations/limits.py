"""Limits on conversations: how many one server has generating at once, one answer at a time
per channel, and how often one person is told they are going too fast.

The per-user budget itself is the bot's (``bot.usage``); these add what conversations need.
State lives in memory: a restart starts every count afresh.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

from bot.errors import UserFacingError


class ServerBusy(UserFacingError):
    """The server already has as many conversations generating as it may."""


class ServerSlots:
    """At most ``limit`` conversations of one server generate at once (DMs are not a server:
    the per-user budget bounds them)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._active: dict[int, int] = {}

    def active(self, guild_id: int | None) -> int:
        return self._active.get(guild_id, 0) if guild_id is not None else 0

    @contextmanager
    def take(self, guild_id: int | None) -> Iterator[None]:
        """Hold one of the server's slots in the block; :class:`ServerBusy` when none is free."""
        if guild_id is None:
            yield
            return
        active = self._active.get(guild_id, 0)
        if active >= self.limit:
            answered = "conversation" if active == 1 else "conversations"
            raise ServerBusy(
                f"This server already has {active} {answered} being answered, the most it may "
                "have at once; try again when one of them finishes."
            )
        self._active[guild_id] = active + 1
        try:
            yield
        finally:
            left = self._active[guild_id] - 1
            if left:
                self._active[guild_id] = left
            else:
                del self._active[guild_id]


class ChannelLocks:
    """One answer at a time per channel, in arrival order, so each reads the ones before it."""

    def __init__(self) -> None:
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, channel_id: int) -> AsyncIterator[None]:
        lock, users = self._locks.get(channel_id, (asyncio.Lock(), 0))
        self._locks[channel_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[channel_id]
            if users > 1:
                self._locks[channel_id] = (lock, users - 1)
            else:
                del self._locks[channel_id]

    def __len__(self) -> int:
        return len(self._locks)


class NoteThrottle:
    """Whether a person may be told something again (a refusal) or should only see a reaction:
    at most one note per person per ``interval_s`` seconds, so a flood of messages cannot make
    the bot flood the channel."""

    def __init__(
        self, interval_s: float = 30.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[int, float] = {}

    def allow(self, user_id: int) -> bool:
        now = self._clock()
        if len(self._last) > 4096:  # forget people who went quiet
            self._last = {u: t for u, t in self._last.items() if now - t < self.interval_s}
        last = self._last.get(user_id)
        if last is not None and now - last < self.interval_s:
            return False
        self._last[user_id] = now
        return True
