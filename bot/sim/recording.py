"""The record of every REST request the bot made to the emulator, with the emulator's answer."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from bot.sim.clock import SimClock
from bot.sim.entities import RecordedFile, RecordedRequest
from bot.sim.interaction import SimInteraction

log = logging.getLogger(__name__)


class RequestLog:
    """Requests in arrival order; each is also listed under the interaction it answered."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.entries: list[RecordedRequest] = []

    @property
    def next_index(self) -> int:
        """The index the request being handled now will get (message revisions point at it)."""
        return len(self.entries)

    def record(
        self,
        *,
        method: str,
        path: str,
        route: str,
        query: Mapping[str, str],
        body: Any,
        files: list[RecordedFile],
        status: int,
        response: Any,
        interaction: SimInteraction | None,
    ) -> RecordedRequest:
        recorded = RecordedRequest(
            index=len(self.entries),
            method=method,
            path=path,
            route=route,
            query=dict(query),
            json=body,
            files=tuple(files),
            status=status,
            response=response,
            at=self.clock.now(),
            interaction_id=interaction.id if interaction is not None else None,
        )
        self.entries.append(recorded)
        if status >= 400:
            log.debug("emulator answered %s %s with %s: %s", method, path, status, response)
        if interaction is not None:
            interaction.requests.append(recorded)
            interaction.touch()
        return recorded

    def matching(
        self, route: str | None = None, method: str | None = None
    ) -> list[RecordedRequest]:
        """Requests on a route template ("POST /channels/{channel_id}/messages", or without the
        method) and/or with a method."""
        return [
            r
            for r in self.entries
            if (route is None or r.route == route or r.route.split(" ", 1)[1] == route)
            and (method is None or r.method == method)
        ]

    @property
    def unhandled(self) -> list[RecordedRequest]:
        """Requests to routes the emulator does not implement."""
        return [r for r in self.entries if r.route.endswith(" UNKNOWN")]
