"""A live interaction as the driver sees it (its acknowledgment, messages and edits, and waiting on
them), and the registry of every interaction sent to the bot."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

from bot.sim.entities import RecordedRequest, SimChannel, SimGuild, SimMessage, SimUser
from bot.sim.errors import InteractionFailed, InteractionTimeout

APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3

# Interaction callback types.
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
DEFERRED_UPDATE_MESSAGE = 6
UPDATE_MESSAGE = 7
MODAL = 9

CALLBACK_NAMES = {
    CHANNEL_MESSAGE: "message",
    DEFERRED_CHANNEL_MESSAGE: "deferred",
    DEFERRED_UPDATE_MESSAGE: "deferred update",
    UPDATE_MESSAGE: "update",
    MODAL: "modal",
}


class SimInteraction:
    """One interaction sent to the bot; fields update as the bot answers it."""

    def __init__(
        self,
        *,
        interaction_id: int,
        token: str,
        type: int,
        name: str,
        user: SimUser,
        channel: SimChannel,
        guild: SimGuild | None,
        created_at: float,
        created_wall: dt.datetime,
        payload: dict[str, Any],
        quiet_s: float,
        tracked: bool,
        target_message: SimMessage | None = None,
        command_type: int = 0,
    ) -> None:
        self.id = interaction_id
        self.token = token
        self.type = type
        self.name = name  # "/context set", "Analyze sentiment", or a button's custom_id
        self.user = user
        self.channel = channel
        self.guild = guild
        self.created_at = created_at  # SimClock.monotonic() at dispatch
        self.created_wall = created_wall
        self.payload = payload  # the INTERACTION_CREATE data sent to the bot
        self.target_message = target_message
        self.command_type = command_type  # 1 chat input, 2 user menu, 3 message menu; 0 components
        self.response_type: int | None = None
        self.response_data: dict[str, Any] | None = None
        self.acknowledged_at: float | None = None
        self.failed = False
        self.original: SimMessage | None = None
        self.followups: list[SimMessage] = []
        self.requests: list[RecordedRequest] = []
        self.tracked = tracked
        self.handler_done = False
        self._quiet_s = quiet_s
        self._event = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()
        self._deadline: asyncio.TimerHandle | None = None

    # -- state -------------------------------------------------------------------------

    @property
    def acknowledged(self) -> bool:
        return self.response_type is not None

    @property
    def deferred(self) -> bool:
        return self.response_type in (DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE)

    @property
    def loading(self) -> bool:
        """True while a deferred response still shows "thinking..."."""
        return self.original is not None and self.original.loading and not self.original.deleted

    @property
    def ephemeral(self) -> bool:
        return self.original is not None and self.original.ephemeral

    @property
    def messages(self) -> list[SimMessage]:
        """The original response (if any) and every followup, in order; deleted ones included."""
        return ([self.original] if self.original is not None else []) + list(self.followups)

    @property
    def contents(self) -> list[str]:
        return [m.content for m in self.messages if not m.deleted]

    @property
    def text(self) -> str:
        """Every live message's text (content and embeds), joined by newlines."""
        return "\n".join(m.text for m in self.messages if not m.deleted)

    @property
    def rejected(self) -> list[RecordedRequest]:
        """Requests for this interaction that Discord would have refused."""
        return [r for r in self.requests if not r.ok]

    # -- updates from the emulator -----------------------------------------------------

    def touch(self) -> None:
        self._last_activity = self._loop.time()
        event, self._event = self._event, asyncio.Event()
        event.set()

    def mark_handler_done(self) -> None:
        self.handler_done = True
        self.touch()

    def fail(self) -> None:
        self.failed = True
        self.touch()

    def start_deadline(self, seconds: float, on_expiry: Callable[[SimInteraction], None]) -> None:
        """Call ``on_expiry(self)`` after ``seconds`` unless :meth:`cancel_deadline` runs first."""
        self.cancel_deadline()
        self._deadline = self._loop.call_later(seconds, on_expiry, self)

    def cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    # -- waiting -----------------------------------------------------------------------

    async def acknowledged_within(self, timeout: float = 5.0) -> SimInteraction:
        """Wait until the bot acknowledges (any callback type)."""
        return await self.wait_until(lambda i: i.acknowledged, timeout=timeout, require_ack=False)

    async def wait_until(
        self,
        predicate: Callable[[SimInteraction], bool],
        *,
        timeout: float = 30.0,
        require_ack: bool = True,
    ) -> SimInteraction:
        """Wait until predicate(self) holds (and, with require_ack, the bot acknowledged).

        Raises InteractionFailed when the interaction failed and require_ack is set, or
        InteractionTimeout.
        """
        deadline = self._loop.time() + timeout
        while True:
            event = self._event
            if (self.acknowledged or not require_ack) and predicate(self):
                return self
            if self.failed and require_ack:
                raise InteractionFailed(self._failure_text())
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                raise InteractionTimeout(f"condition not met within {timeout} s\n{self.describe()}")
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                pass

    async def final(
        self,
        timeout: float = 30.0,
        *,
        quiet: float | None = None,
        until: Callable[[SimInteraction], bool] | None = None,
    ) -> SimInteraction:
        """Wait for the finished answer and return self.

        Finished means: acknowledged, no "thinking..." left, the bot's handler returned (when the
        emulator tracks the bot), and no request for this interaction for `quiet` seconds. With
        `until`, finished means `until(self)` is true instead. Raises InteractionFailed if the bot
        missed the 3-second deadline, InteractionTimeout otherwise.
        """
        if until is not None:
            return await self.wait_until(until, timeout=timeout)
        quiet_s = self._quiet_s if quiet is None else quiet
        deadline = self._loop.time() + timeout
        while True:
            event = self._event
            if self.failed:
                raise InteractionFailed(self._failure_text())
            wait: float | None = None
            if self.acknowledged and not self.loading and (self.handler_done or not self.tracked):
                idle = self._loop.time() - self._last_activity
                if idle >= quiet_s:
                    return self
                wait = quiet_s - idle
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                raise InteractionTimeout(f"no final answer within {timeout} s\n{self.describe()}")
            try:
                await asyncio.wait_for(
                    event.wait(), remaining if wait is None else min(wait, remaining)
                )
            except TimeoutError:
                pass

    def _failure_text(self) -> str:
        return (
            f"{self.name}: the bot did not acknowledge the interaction within Discord's deadline; "
            f"the user sees 'The application did not respond'.\n{self.describe()}"
        )

    def describe(self) -> str:
        """A multi-line summary for assertion messages."""
        kind = CALLBACK_NAMES.get(self.response_type or 0, "none")
        lines = [
            f"interaction {self.id} {self.name!r} by {self.user.name} in #{self.channel.name}: "
            f"response={kind} failed={self.failed} tracked={self.tracked} handler_done={self.handler_done}"
        ]
        for message in self.messages:
            lines.append(f"  {message!r}")
        for request in self.requests:
            lines.append(f"  {request.method} {request.path} -> {request.status}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<SimInteraction {self.name!r} id={self.id} response={self.response_type} failed={self.failed}>"


class InteractionRegistry:
    """Every interaction sent to the bot, in order, found by id, by token or by a message it owns.

    ``tracking_commands`` / ``tracking_views`` say whether the bot's command and view handlers
    report when they finish (see :mod:`bot.sim.tracking`); new interactions are ``tracked`` then.
    """

    def __init__(self) -> None:
        self.all: list[SimInteraction] = []
        self._by_id: dict[int, SimInteraction] = {}
        self._by_token: dict[str, SimInteraction] = {}
        self.tracking_commands = False
        self.tracking_views = False

    def add(self, interaction: SimInteraction) -> None:
        self.all.append(interaction)
        self._by_id[interaction.id] = interaction
        self._by_token[interaction.token] = interaction

    def get(self, interaction_id: int) -> SimInteraction | None:
        return self._by_id.get(interaction_id)

    def by_token(self, token: str) -> SimInteraction | None:
        return self._by_token.get(token)

    def owner_of(self, message: SimMessage) -> SimInteraction | None:
        """The interaction a bot message answers (None for channel messages and user posts)."""
        return self._by_id.get(message.interaction_id or 0)

    def tracks(self, interaction_type: int) -> bool:
        """Whether the bot reports when its handler for this interaction type returns."""
        if interaction_type == APPLICATION_COMMAND:
            return self.tracking_commands
        return interaction_type == MESSAGE_COMPONENT and self.tracking_views

    def handler_finished(self, interaction_id: int) -> None:
        interaction = self._by_id.get(interaction_id)
        if interaction is not None:
            interaction.mark_handler_done()

    def cancel_deadlines(self) -> None:
        for interaction in self.all:
            interaction.cancel_deadline()
