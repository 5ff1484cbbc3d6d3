"""An injectable clock, so tests can jump past Discord's time limits without waiting."""

from __future__ import annotations

import datetime as dt
import time


class SimClock:
    """Wall and monotonic time with an adjustable offset shared by both."""

    def __init__(self) -> None:
        self._offset = 0.0

    def monotonic(self) -> float:
        """Seconds on a monotonic scale, including any advance()."""
        return time.monotonic() + self._offset

    def now(self) -> dt.datetime:
        """Current UTC time, including any advance()."""
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self._offset)

    def advance(self, seconds: float) -> None:
        """Move time forward (e.g. past an interaction token's 15-minute life)."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._offset += seconds


DISCORD_EPOCH_MS = 1_420_070_400_000


class SnowflakeFactory:
    """Discord-shaped ids: creation time in the top bits, then a counter.

    Ids only grow, so they stay unique even next to ids made in an earlier run (a saved world):
    :meth:`reserve_up_to` moves past those.
    """

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock
        self._increment = 0
        self._last = 0
        self._for_shard: tuple[int, int] | None = None

    def next(self) -> int:
        self._increment = (self._increment + 1) % 4096
        ms = int(self._clock.now().timestamp() * 1000) - DISCORD_EPOCH_MS
        if self._for_shard is not None:
            # Decided here, not when reserved: a millisecond passing between the two would
            # otherwise move the id to another shard.
            shard_id, shard_count = self._for_shard
            self._for_shard = None
            ms = max(ms, self._last >> 22)
            ms += (shard_id - ms) % shard_count
        self._last = max((ms << 22) | (1 << 17) | self._increment, self._last + 1)
        return self._last

    def reserve_for_shard(self, shard_id: int, shard_count: int) -> None:
        """Make the next id one Discord routes to shard ``shard_id`` of ``shard_count``
        (``(id >> 22) % shard_count``): its time moves at most ``shard_count - 1`` ms ahead."""
        self._for_shard = (shard_id, shard_count)

    def reserve_up_to(self, taken: int) -> None:
        """Never hand out ``taken`` or anything below it."""
        self._last = max(self._last, taken)


def snowflake_time_ms(snowflake: int) -> int:
    """When a snowflake was made, in milliseconds since the Unix epoch."""
    return (snowflake >> 22) + DISCORD_EPOCH_MS
