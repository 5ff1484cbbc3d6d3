"""DiscordEmulator: a loopback Discord (REST + gateway) the unmodified discord.py client logs in to.

Tests and the playground drive it as Discord users would (slash commands, context menus, button
clicks, messages: see :mod:`bot.sim.driver`) and assert on what the bot actually sent. This
module wires the parts together and serves them; each part does one job:

- :mod:`bot.sim.state` / :mod:`bot.sim.world`: the entities and the named default world
  (:mod:`bot.sim.worldfile` saves a world and loads it back);
- :mod:`bot.sim.rest` / :mod:`bot.sim.gateway`: the HTTP API and the websocket the bot uses;
- :mod:`bot.sim.messages`: creating, editing and deleting messages, and their events;
- :mod:`bot.sim.responses`: Discord's rules for answering interactions;
- :mod:`bot.sim.recording`: every request the bot made; :mod:`bot.sim.tracking`: its handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from aiohttp import web

from bot.sim.clock import SimClock
from bot.sim.driver import Driver
from bot.sim.entities import (
    MessageRevision,
    RecordedRequest,
    SimAttachment,
    SimChannel,
    SimGuild,
    SimMessage,
    SimRole,
    SimUser,
    SyncedCommand,
)
from bot.sim.gateway import GatewayHub
from bot.sim.interaction import InteractionRegistry, SimInteraction
from bot.sim.messages import MessageEvent, MessageService
from bot.sim.options import find_command
from bot.sim.ratelimit import RateLimiter, RateLimitPolicy
from bot.sim.recording import RequestLog
from bot.sim.responses import InteractionResponder
from bot.sim.rest import RestApi
from bot.sim.state import PRIVILEGED_INTENTS, SimState
from bot.sim.threads import ThreadService
from bot.sim.tracking import track_handlers
from bot.sim.world import build_default_world
from bot.sim.worldfile import SavedWorld, restore_world

log = logging.getLogger(__name__)


class DiscordEmulator(Driver):
    """A small Discord API v10 on 127.0.0.1 with two guilds, an admin and a plain member.

    Use as `async with DiscordEmulator() as emu:` and `with emu.patch_discord():` around the bot.
    """

    def __init__(
        self,
        *,
        token: str = "sim-token",
        host: str = "127.0.0.1",
        port: int = 0,
        clock: SimClock | None = None,
        ack_deadline_s: float = 3.0,
        token_ttl_s: float = 15 * 60.0,
        quiet_s: float = 0.25,
        rate_limit: RateLimitPolicy | None = None,
        heartbeat_interval_ms: int = 41250,
        saved_world: SavedWorld | None = None,
        privileged_intents: int = PRIVILEGED_INTENTS,
    ) -> None:
        """``saved_world`` (see :mod:`bot.sim.worldfile`) brings back an earlier run's world with
        its ids; without it the default world is made with new ids. Raises WorldFileError when
        the saved world is damaged. ``privileged_intents``: those switched on for the app in the
        Developer Portal (default: all). Without Message Content there, REST fetches hide
        content as gateway events do, and identifying with it is refused (close code 4014)."""
        clock = clock or SimClock()
        if saved_world is None:
            state = SimState(clock, token=token, privileged_intents=privileged_intents)
            world = build_default_world(state)
        else:
            state = SimState(
                clock,
                token=token,
                application_id=saved_world.application_id,
                privileged_intents=privileged_intents,
            )
            world = restore_world(state, saved_world)
        hub = GatewayHub(
            state,
            gateway_url=lambda: self.gateway_url,
            heartbeat_interval_ms=heartbeat_interval_ms,
        )
        registry = InteractionRegistry()
        self.request_log = RequestLog(clock)
        message_service = MessageService(
            state, hub=hub, interactions=registry, requests=self.request_log
        )
        threads = ThreadService(state, hub=hub)
        responder = InteractionResponder(
            state,
            interactions=registry,
            messages=message_service,
            ack_deadline_s=ack_deadline_s,
            token_ttl_s=token_ttl_s,
        )
        super().__init__(
            state=state,
            world=world,
            hub=hub,
            registry=registry,
            responder=responder,
            message_service=message_service,
            threads=threads,
            quiet_s=quiet_s,
        )
        self.clock = clock
        self.token = token
        self.host = host
        self.port = port
        self.ratelimiter = RateLimiter(rate_limit or RateLimitPolicy())
        self.rest = RestApi(
            state,
            interactions=registry,
            responder=responder,
            messages=message_service,
            threads=threads,
            requests=self.request_log,
            ratelimiter=self.ratelimiter,
            gateway_url=lambda: self.gateway_url,
        )
        self._runner: web.AppRunner | None = None
        self.bot_user: SimUser = state.bot_user
        self.admin: SimUser = world.admin
        self.member: SimUser = world.member
        self.guild: SimGuild = world.guild
        self.admin_role: SimRole = world.admin_role
        self.channel: SimChannel = world.channel
        self.thread: SimChannel = world.thread
        self.other_guild: SimGuild = world.other_guild
        self.other_channel: SimChannel = world.other_channel

    # -- the world ---------------------------------------------------------------------

    def add_user(self, name: str, *, guilds: Sequence[SimGuild] = ()) -> SimUser:
        """A new user, member of the given guilds (no roles)."""
        user = self.state.add_user(name)
        for guild in guilds:
            self.state.add_member(guild, user)
        return user

    def add_guild(
        self, name: str, *, shard: tuple[int, int] | None = None
    ) -> tuple[SimGuild, SimChannel]:
        """A new server owned by ``admin`` with ``member`` in it, and its #general channel; with
        ``shard`` (id, count) its id is one Discord routes to that shard. Add servers before
        the bot connects (a bot learns its servers at IDENTIFY)."""
        if shard is not None:
            self.state.ids.reserve_for_shard(*shard)
        guild = self.state.add_guild(name, owner=self.admin)
        self.state.add_member(guild, self.member)
        return guild, self.state.add_channel(guild, "general")

    def dm(self, user: SimUser) -> SimChannel:
        """The DM channel between a user and the bot."""
        return self.state.dm_channel(user)

    def attachment(
        self, filename: str, data: bytes | str, content_type: str | None = None
    ) -> SimAttachment:
        """A file a user uploads, for an attachment option or post_message()."""
        raw = data.encode() if isinstance(data, str) else data
        return self.state.make_attachment(filename, raw, content_type)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.rest.install(app)
        app.router.add_get("/", self.hub.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.state.base_url = self.base_url
        log.info("Discord emulator listening on %s", self.base_url)

    async def close(self) -> None:
        self.registry.cancel_deadlines()
        await self.hub.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DiscordEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    @contextlib.contextmanager
    def patch_discord(self) -> Iterator[DiscordEmulator]:
        """Point discord.py's REST base and gateway URL at this emulator (process-wide), then restore."""
        import yarl
        from discord.gateway import DiscordWebSocket
        from discord.http import Route

        old = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
        Route.BASE = self.api_base
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield self
        finally:
            Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = old

    def track(self, client: Any) -> None:
        """Follow the bot's handlers so `final()` knows when a command's callback has returned.

        Without it `final()` relies on a quiet period only (see :mod:`bot.sim.tracking`).
        """
        track_handlers(client, self.registry)

    # -- observing ---------------------------------------------------------------------

    async def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait until a bot session has identified and received its guilds."""
        await asyncio.wait_for(self.hub.ready.wait(), timeout)

    async def wait_synced(self, timeout: float = 15.0) -> None:
        """Wait until the bot has bulk-overwritten its commands at least once."""
        await asyncio.wait_for(self.rest.commands_synced.wait(), timeout)

    async def reconnect(self) -> None:
        """Send op 7 RECONNECT; the client reconnects and RESUMEs."""
        await self.hub.request_reconnect()

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward (token expiry, ack deadline)."""
        self.clock.advance(seconds)

    def force_rate_limit(
        self, route: str, *, retry_after: float = 0.1, times: int = 1, is_global: bool = False
    ) -> None:
        """Answer the next `times` requests on `route` ("POST /channels/{channel_id}/messages") with 429."""
        self.ratelimiter.force(route, retry_after=retry_after, times=times, is_global=is_global)

    def add_listener(self, callback: Callable[[MessageEvent], None]) -> None:
        """Call `callback` on every message the bot creates, edits or deletes (and user posts)."""
        self.message_service.add_listener(callback)

    @property
    def interactions(self) -> list[SimInteraction]:
        """Every interaction sent to the bot, oldest first."""
        return self.registry.all

    def interaction_for(self, message: SimMessage) -> SimInteraction | None:
        """The interaction a bot message answers (None for channel messages and user posts)."""
        return self.registry.owner_of(message)

    @property
    def synced_commands(self) -> list[SyncedCommand]:
        found = list(self.state.global_commands.values())
        for table in self.state.guild_commands.values():
            found.extend(table.values())
        return found

    def command(self, name: str, *, guild: SimGuild | None = None, type: int = 1) -> SyncedCommand:
        return find_command(self.state, name, guild.id if guild else None, type)

    @property
    def messages(self) -> list[SimMessage]:
        """Every message in the emulator (ephemeral and deleted included), oldest first."""
        return sorted(self.state.messages.values(), key=lambda m: m.id)

    @property
    def bot_messages(self) -> list[SimMessage]:
        return [m for m in self.messages if m.author is self.bot_user]

    def mention_leaks(self) -> list[tuple[SimMessage, MessageRevision]]:
        """Bot message revisions whose content would resolve a mention (a ping) on Discord."""
        return [(m, r) for m in self.bot_messages for r in m.revisions if r.mentions]

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every REST request the bot made, with the emulator's answer, oldest first."""
        return self.request_log.entries

    def requests_for(
        self, route: str | None = None, *, method: str | None = None
    ) -> list[RecordedRequest]:
        """Recorded requests, optionally filtered by route template and/or method."""
        return self.request_log.matching(route, method)

    @property
    def unhandled_requests(self) -> list[RecordedRequest]:
        """Requests to routes the emulator does not implement."""
        return self.request_log.unhandled
