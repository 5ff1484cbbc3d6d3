"""Fair use: one budget of model requests per user, across every model command and action.

A user may start at most ``budget`` model requests in any ``window_s`` seconds (/generate,
/sentiment, /ner, /ask, the message actions and any later feature, all together) and have at
most ``max_in_flight`` of them running at once (a /generate counts until its stream ends).
The bot owns one :class:`UsageLimiter` (``bot.usage``); anything about to do model work for a
user asks it first:

    with bot.usage.hold(user_id):     # raises UsageRefused (a sentence) when over a limit
        ...                           # the model work; the slot frees on leaving the block

or ``ticket = bot.usage.admit(user_id)`` ... ``ticket.release()`` when the work outlives a
block. A refusal costs nothing; an admitted request counts against the budget even if it then
fails. State lives in memory: a restart gives everyone a fresh budget.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.errors import UserFacingError

if TYPE_CHECKING:
    from bot.settings import Settings

# Forget users with nothing in the window once in this many admissions.
_SWEEP_EVERY = 512


@dataclass(frozen=True)
class UsageLimits:
    """``budget`` requests per ``window_s`` seconds (0: no budget), ``max_in_flight`` at once."""

    budget: int
    window_s: float
    max_in_flight: int

    def __post_init__(self) -> None:
        if self.budget < 0 or self.window_s <= 0 or self.max_in_flight < 1:
            raise ValueError("budget >= 0, window_s > 0 and max_in_flight >= 1 are required")

    @classmethod
    def from_settings(cls, settings: Settings) -> UsageLimits:
        return cls(
            budget=settings.user_budget,
            window_s=settings.user_budget_window_s,
            max_in_flight=settings.user_max_in_flight,
        )


class UsageRefused(UserFacingError):
    """Over a limit; the message says which and when to try again (``retry_after_s``, or None
    when it depends on a running request ending)."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UsageTicket:
    """One admitted request: holds an in-flight slot until :meth:`release` (or the block's end)."""

    def __init__(self, limiter: UsageLimiter, user_id: int) -> None:
        self._limiter = limiter
        self.user_id = user_id
        self.released = False

    def release(self) -> None:
        """Free the slot (again is a no-op)."""
        if not self.released:
            self.released = True
            self._limiter._release(self.user_id)

    def __enter__(self) -> UsageTicket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class _User:
    __slots__ = ("in_flight", "started")

    def __init__(self) -> None:
        self.started: deque[float] = deque()  # admission times inside the window
        self.in_flight = 0


class UsageLimiter:
    """Counts each user's model requests; one instance per bot (see the module docstring)."""

    def __init__(self, limits: UsageLimits, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._users: dict[int, _User] = {}
        self._admitted = 0

    def admit(self, user_id: int) -> UsageTicket:
        """Count a new request of ``user_id``; :class:`UsageRefused` when over a limit."""
        now = self._clock()
        user = self._users.get(user_id) or _User()
        self._expire(user, now)
        limits = self.limits
        if user.in_flight >= limits.max_in_flight:
            if user.in_flight == 1:
                running, which = "a model request", "it"
            else:
                running, which = f"{user.in_flight} model requests", "one"
            raise UsageRefused(
                f"You already have {running} running; wait for {which} to finish, then try again."
            )
        if limits.budget and len(user.started) >= limits.budget:
            retry_after = user.started[0] + limits.window_s - now
            raise UsageRefused(
                f"You're going a little fast: each person gets {limits.budget} model requests "
                f"every {_seconds(limits.window_s)} (all commands together). "
                f"Try again in {max(1, math.ceil(retry_after))} s.",
                retry_after_s=retry_after,
            )
        if limits.budget:
            user.started.append(now)
        user.in_flight += 1
        self._users[user_id] = user
        self._admitted += 1
        if self._admitted % _SWEEP_EVERY == 0:
            self._sweep(now)
        return UsageTicket(self, user_id)

    @contextmanager
    def hold(self, user_id: int) -> Iterator[UsageTicket]:
        """:meth:`admit`, released when the block ends (however it ends)."""
        with self.admit(user_id) as ticket:
            yield ticket

    def in_flight(self, user_id: int) -> int:
        """Requests of ``user_id`` admitted and not released."""
        user = self._users.get(user_id)
        return user.in_flight if user is not None else 0

    def remaining(self, user_id: int) -> int | None:
        """Requests ``user_id`` may still start in the current window (None: no budget)."""
        if not self.limits.budget:
            return None
        user = self._users.get(user_id)
        if user is None:
            return self.limits.budget
        self._expire(user, self._clock())
        return max(0, self.limits.budget - len(user.started))

    @property
    def tracked_users(self) -> int:
        """Users with requests in the window or in flight (memory held)."""
        return len(self._users)

    def _release(self, user_id: int) -> None:
        user = self._users.get(user_id)
        if user is None or user.in_flight == 0:
            return
        user.in_flight -= 1
        self._expire(user, self._clock())
        if user.in_flight == 0 and not user.started:
            del self._users[user_id]

    def _expire(self, user: _User, now: float) -> None:
        horizon = now - self.limits.window_s
        while user.started and user.started[0] <= horizon:
            user.started.popleft()

    def _sweep(self, now: float) -> None:
        for user_id, user in list(self._users.items()):
            self._expire(user, now)
            if user.in_flight == 0 and not user.started:
                del self._users[user_id]


def _seconds(value: float) -> str:
    if value >= 120 and value % 60 == 0:
        return f"{int(value // 60)} minutes"
    return f"{value:g} s"
