"""DiscordEmulator: a loopback Discord (REST + gateway) the unmodified discord.py client logs in to.

Tests and the playground drive it as Discord users would (slash commands, context menus, button
clicks, messages) and assert on what the bot actually sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.sim.clock import SimClock
from bot.sim.errors import CommandNotVisible, ComponentError, SimError
from bot.sim.gateway import GatewayHub
from bot.sim.interaction import APPLICATION_COMMAND, MESSAGE_COMPONENT, SimInteraction
from bot.sim.models import (
    ADMINISTRATOR,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    FLAG_SUPPRESS_EMBEDS,
    MessageRevision,
    RecordedFile,
    RecordedRequest,
    SimAttachment,
    SimChannel,
    SimGuild,
    SimMessage,
    SimRole,
    SimUser,
    SyncedCommand,
    iter_components,
)
from bot.sim.options import OptionResolver, find_command
from bot.sim.ratelimit import RateLimiter, RateLimitPolicy
from bot.sim.rest import _FILE_FIELD, INTERACTION, RestApi
from bot.sim.state import (
    ATTACHMENT_SIZE_LIMIT,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MESSAGES,
    SimState,
)
from bot.sim.validation import (
    MAX_FILES,
    DiscordHTTPError,
    FormErrors,
    require_not_empty,
    resolve_mentions,
    validate_message_body,
)

log = logging.getLogger(__name__)

MESSAGE_TYPE_DEFAULT = 0
MESSAGE_TYPE_REPLY = 19
MESSAGE_TYPE_CHAT_INPUT = 20
MESSAGE_TYPE_CONTEXT_MENU = 23


@dataclass(frozen=True)
class MessageEvent:
    """A change the bot made to a message, as delivered to emulator listeners."""

    kind: str  # "create", "edit" or "delete"
    message: SimMessage
    interaction: SimInteraction | None


class DiscordEmulator:
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
    ) -> None:
        self.clock = clock or SimClock()
        self.state = SimState(self.clock, token=token)
        self.token = token
        self.host = host
        self.port = port
        self.ack_deadline_s = ack_deadline_s
        self.token_ttl_s = token_ttl_s
        self.quiet_s = quiet_s
        self.ratelimiter = RateLimiter(rate_limit or RateLimitPolicy())
        self.hub = GatewayHub(
            self.state,
            gateway_url=lambda: self.gateway_url,
            heartbeat_interval_ms=heartbeat_interval_ms,
        )
        self.requests: list[RecordedRequest] = []
        self.interactions: list[SimInteraction] = []
        self._interactions: dict[int, SimInteraction] = {}
        self._interactions_by_token: dict[str, SimInteraction] = {}
        self._listeners: list[Callable[[MessageEvent], None]] = []
        self._synced = asyncio.Event()
        self._tracking_commands = False
        self._tracking_views = False
        self._runner: web.AppRunner | None = None
        self._build_world()

    # -- the world ---------------------------------------------------------------------

    def _build_world(self) -> None:
        state = self.state
        self.bot_user: SimUser = state.bot_user
        self.admin: SimUser = state.add_user("admin")
        self.member: SimUser = state.add_user("member")
        self.guild: SimGuild = state.add_guild("Test Server", owner=self.admin)
        self.admin_role: SimRole = state.add_role(self.guild, "Admins", permissions=ADMINISTRATOR)
        self.guild.members[self.admin.id].roles.append(self.admin_role.id)
        state.add_member(self.guild, self.member)
        self.channel: SimChannel = state.add_channel(self.guild, "general")
        self.thread: SimChannel = state.add_thread(
            self.channel, "general-thread", owner=self.member
        )
        self.other_guild: SimGuild = state.add_guild("Other Server", owner=self.admin)
        state.add_member(self.other_guild, self.member)
        self.other_channel: SimChannel = state.add_channel(self.other_guild, "other-general")

    def add_user(self, name: str, *, guilds: Sequence[SimGuild] = ()) -> SimUser:
        """A new user, member of the given guilds (no roles)."""
        user = self.state.add_user(name)
        for guild in guilds:
            self.state.add_member(guild, user)
        return user

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
        RestApi(self).install(app)
        app.router.add_get("/", self.hub.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        self.state.base_url = self.base_url
        log.info("Discord emulator listening on %s", self.base_url)

    async def close(self) -> None:
        for inter in self.interactions:
            if inter._deadline is not None:
                inter._deadline.cancel()
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

        Wraps the client's CommandTree dispatch and view store (discord.py internals) without
        changing what they do; without it `final()` relies on a quiet period only.
        """
        from discord import app_commands

        tree = getattr(client, "tree", None) or getattr(client._connection, "_command_tree", None)
        if tree is not None:
            orig_call = tree._call
            orig_error = tree._dispatch_error

            async def call(interaction: Any) -> None:
                try:
                    await orig_call(interaction)
                except app_commands.AppCommandError:
                    raise  # finished once _dispatch_error has run
                except BaseException:
                    self._handler_finished(interaction.id)
                    raise
                self._handler_finished(interaction.id)

            async def dispatch_error(interaction: Any, error: Any) -> None:
                try:
                    await orig_error(interaction, error)
                finally:
                    self._handler_finished(interaction.id)

            tree._call = call
            tree._dispatch_error = dispatch_error
            self._tracking_commands = True
        store = client._connection._view_store
        orig_dispatch = store.dispatch_view
        orig_add_task = store.add_task
        dispatching: list[int] = []
        started: set[int] = set()

        def dispatch_view(component_type: int, custom_id: str, interaction: Any) -> None:
            dispatching.append(interaction.id)
            try:
                orig_dispatch(component_type, custom_id, interaction)
            finally:
                dispatching.pop()
            if interaction.id not in started:
                self._handler_finished(interaction.id)  # no view took it

        def add_task(task: asyncio.Task[None]) -> None:
            orig_add_task(task)
            if dispatching:
                iid = dispatching[-1]
                started.add(iid)
                task.add_done_callback(lambda _t: self._handler_finished(iid))

        store.dispatch_view = dispatch_view
        store.add_task = add_task
        self._tracking_views = True

    def _handler_finished(self, interaction_id: int) -> None:
        inter = self._interactions.get(interaction_id)
        if inter is not None:
            inter.mark_handler_done()

    # -- observing ---------------------------------------------------------------------

    async def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait until a bot session has identified and received its guilds."""
        await asyncio.wait_for(self.hub.ready.wait(), timeout)

    async def wait_synced(self, timeout: float = 15.0) -> None:
        """Wait until the bot has bulk-overwritten its commands at least once."""
        await asyncio.wait_for(self._synced.wait(), timeout)

    def _commands_synced(self) -> None:
        self._synced.set()

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
        self._listeners.append(callback)

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

    def requests_for(
        self, route: str | None = None, *, method: str | None = None
    ) -> list[RecordedRequest]:
        """Recorded requests, optionally filtered by route template and/or method."""
        return [
            r
            for r in self.requests
            if (route is None or r.route == route or r.route.split(" ", 1)[1] == route)
            and (method is None or r.method == method)
        ]

    @property
    def unhandled_requests(self) -> list[RecordedRequest]:
        """Requests to routes the emulator does not implement."""
        return [r for r in self.requests if r.route.endswith(" UNKNOWN")]

    # -- driving: users acting ---------------------------------------------------------

    async def slash(
        self,
        command: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: SimUser | None = None,
        channel: SimChannel | None = None,
        bypass_permissions: bool = False,
    ) -> SimInteraction:
        """Invoke a chat-input command ("ask" or "context set") as a user; returns at once.

        `bypass_permissions` models a server admin's per-command override, so a command hidden by
        default_member_permissions can still reach the bot (whose own checks must then hold).
        """
        user = user or self.member
        channel = channel or self.channel
        words = command.strip().lstrip("/").split()
        if not words:
            raise SimError("empty command")
        guild = self.state.guild_of(channel)
        synced = find_command(self.state, words[0], guild.id if guild else None, 1)
        self._check_visible(synced, user, channel, guild, bypass_permissions)
        invocation = OptionResolver(self.state, guild).build(synced, words[1:], options or {})
        data: dict[str, Any] = {
            "id": str(synced.id),
            "name": synced.name,
            "type": 1,
            "options": invocation.options,
        }
        if invocation.resolved:
            data["resolved"] = invocation.resolved
        if synced.guild_id is not None:
            data["guild_id"] = str(synced.guild_id)
        return await self._dispatch_interaction(
            APPLICATION_COMMAND, data, user, channel, name="/" + invocation.qualified_name
        )

    async def context_menu(
        self,
        name: str,
        target: SimMessage | SimUser,
        *,
        user: SimUser | None = None,
        channel: SimChannel | None = None,
        bypass_permissions: bool = False,
    ) -> SimInteraction:
        """Run a message (or user) context-menu command on `target`."""
        user = user or self.member
        resolved: dict[str, Any]
        if isinstance(target, SimMessage):
            if target.deleted or target.ephemeral:
                raise SimError("context menus only apply to visible messages")
            channel = target.channel
            ctype = 3
            resolved = {"messages": {str(target.id): self._message_json(target)}}
        else:
            channel = channel or self.channel
            ctype = 2
            guild_for_user = self.state.guild_of(channel)
            resolved = {"users": {str(target.id): self.state.user_payload(target)}}
            if guild_for_user is not None and target.id in guild_for_user.members:
                resolved["members"] = {
                    str(target.id): self.state.member_payload(
                        guild_for_user,
                        guild_for_user.members[target.id],
                        with_user=False,
                        with_permissions=True,
                    )
                }
        guild = self.state.guild_of(channel)
        synced = find_command(self.state, name, guild.id if guild else None, ctype)
        self._check_visible(synced, user, channel, guild, bypass_permissions)
        data: dict[str, Any] = {
            "id": str(synced.id),
            "name": synced.name,
            "type": ctype,
            "target_id": str(target.id),
            "resolved": resolved,
        }
        if synced.guild_id is not None:
            data["guild_id"] = str(synced.guild_id)
        return await self._dispatch_interaction(
            APPLICATION_COMMAND, data, user, channel, name=name, target=target
        )

    async def click(
        self,
        message: SimMessage,
        custom_id: str | None = None,
        *,
        label: str | None = None,
        user: SimUser | None = None,
    ) -> SimInteraction:
        """Click a button on `message` as shown now, by custom_id or by its label.

        The default user is whoever ran the command the message answers.
        """
        if (custom_id is None) == (label is None):
            raise ValueError("give exactly one of custom_id or label")
        user = user or self._default_clicker(message)
        self._check_clickable(message, user)
        buttons = [b for b in message.buttons if b.custom_id]
        button = next(
            (
                b
                for b in buttons
                if (b.custom_id == custom_id if label is None else b.label == label)
            ),
            None,
        )
        wanted = custom_id if label is None else f"labelled {label!r}"
        if button is None:
            shown = ", ".join(f"{b.label!r} ({b.custom_id})" for b in buttons) or "none"
            raise ComponentError(f"no button {wanted} on {message!r}; buttons: {shown}")
        if button.disabled:
            raise ComponentError(f"button {wanted} is disabled")
        custom_id = str(button.custom_id)
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._dispatch_interaction(
            MESSAGE_COMPONENT,
            data,
            user,
            message.channel,
            name=f"button:{button.label or custom_id}",
            message=message,
        )

    async def select(
        self,
        message: SimMessage,
        custom_id: str,
        values: Sequence[str],
        *,
        user: SimUser | None = None,
    ) -> SimInteraction:
        """Choose `values` in the string select `custom_id` on `message`."""
        user = user or self._default_clicker(message)
        self._check_clickable(message, user)
        menu = next(
            (
                c
                for c in iter_components(message.components)
                if c.get("type") == 3 and c.get("custom_id") == custom_id
            ),
            None,
        )
        if menu is None or menu.get("disabled"):
            raise ComponentError(f"no enabled select {custom_id!r} on {message!r}")
        allowed = {o["value"] for o in menu.get("options") or []}
        low, high = int(menu.get("min_values", 1)), int(menu.get("max_values", 1))
        if not set(values) <= allowed or not low <= len(values) <= high:
            raise ComponentError(f"values {list(values)} not valid for select {custom_id!r}")
        data = {"custom_id": custom_id, "component_type": 3, "values": list(values)}
        return await self._dispatch_interaction(
            MESSAGE_COMPONENT,
            data,
            user,
            message.channel,
            name=f"select:{custom_id}",
            message=message,
        )

    async def post_message(
        self,
        channel: SimChannel,
        author: SimUser,
        content: str = "",
        *,
        attachments: Sequence[SimAttachment] = (),
    ) -> SimMessage:
        """A user's message in a channel (a target for context menus); the bot gets MESSAGE_CREATE."""
        revision = MessageRevision(
            content=content,
            embeds=[],
            components=[],
            attachments=tuple(attachments),
            flags=0,
            allowed_mentions=None,
            mentions=resolve_mentions(content, None),
            at=self.clock.now(),
            request_index=None,
        )
        message = SimMessage(
            id=self.state.ids.next(),
            channel=channel,
            author=author,
            created_at=self.clock.now(),
            revisions=[revision],
        )
        self.state.messages[message.id] = message
        channel.messages.append(message)
        await self._emit("create", message, None)
        return message

    def _default_clicker(self, message: SimMessage) -> SimUser:
        inter = self._interactions.get(message.interaction_id or 0)
        return inter.user if inter is not None else self.member

    def _check_clickable(self, message: SimMessage, user: SimUser) -> None:
        if message.deleted:
            raise ComponentError(f"{message!r} was deleted")
        if message.ephemeral:
            owner = self._interactions.get(message.interaction_id or 0)
            if owner is not None and owner.user is not user:
                raise ComponentError(
                    "only the user who ran the command sees this ephemeral message"
                )

    def _check_visible(
        self,
        command: SyncedCommand,
        user: SimUser,
        channel: SimChannel,
        guild: SimGuild | None,
        bypass: bool,
    ) -> None:
        payload = command.payload
        contexts = payload.get("contexts")
        if guild is None:
            guild_only = payload.get("dm_permission") is False or (
                contexts is not None and 1 not in contexts and 2 not in contexts
            )
            if guild_only and not bypass:
                raise CommandNotVisible(f"{command.name!r} is not available in DMs")
            return
        if user.id not in guild.members:
            raise SimError(f"{user.name} is not a member of {guild.name}")
        if contexts is not None and 0 not in contexts and not bypass:
            raise CommandNotVisible(f"{command.name!r} is not available in servers")
        required = payload.get("default_member_permissions")
        if required is not None and not bypass:
            perms = guild.permissions_for(user.id)
            if not perms & ADMINISTRATOR and (perms & int(required)) != int(required):
                raise CommandNotVisible(
                    f"{user.name} cannot see {command.name!r} (default_member_permissions={required}); "
                    "pass bypass_permissions=True to model a server override"
                )

    async def _dispatch_interaction(
        self,
        itype: int,
        data: dict[str, Any],
        user: SimUser,
        channel: SimChannel,
        *,
        name: str,
        message: SimMessage | None = None,
        target: SimMessage | SimUser | None = None,
    ) -> SimInteraction:
        if self.hub.current is None:
            raise SimError("no bot has connected to the emulator; await emu.wait_ready() first")
        state = self.state
        guild = state.guild_of(channel)
        if guild is not None and user.id not in guild.members:
            raise SimError(f"{user.name} is not a member of {guild.name}")
        interaction_id = state.ids.next()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(state.application_id),
            "type": itype,
            "data": data,
            "token": token,
            "version": 1,
            "locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
            "app_permissions": str(state.bot_permissions(guild)),
            "channel_id": str(channel.id),
            "channel": state.channel_payload(channel),
        }
        if guild is not None:
            payload.update(
                guild_id=str(guild.id),
                guild={"id": str(guild.id), "locale": "en-US", "features": []},
                guild_locale="en-US",
                member=state.member_payload(guild, guild.members[user.id], with_permissions=True),
                authorizing_integration_owners={"0": str(guild.id)},
                context=0,
            )
        else:
            payload.update(
                user=state.user_payload(user),
                authorizing_integration_owners={"0": "0"},
                context=1,
            )
        if message is not None:
            payload["message"] = self._message_json(message)
        inter = SimInteraction(
            interaction_id=interaction_id,
            token=token,
            type=itype,
            name=name,
            user=user,
            channel=channel,
            guild=guild,
            created_at=self.clock.monotonic(),
            created_wall=self.clock.now(),
            payload=payload,
            quiet_s=self.quiet_s,
            tracked=(itype == APPLICATION_COMMAND and self._tracking_commands)
            or (itype == MESSAGE_COMPONENT and self._tracking_views),
            target_message=message
            if message is not None
            else (target if isinstance(target, SimMessage) else None),
            command_type=int(data.get("type", 0)) if itype == APPLICATION_COMMAND else 0,
        )
        self.interactions.append(inter)
        self._interactions[interaction_id] = inter
        self._interactions_by_token[token] = inter
        loop = asyncio.get_running_loop()
        inter._deadline = loop.call_later(self.ack_deadline_s, self._deadline_passed, inter)
        await self.hub.dispatch("INTERACTION_CREATE", payload)
        return inter

    def _deadline_passed(self, inter: SimInteraction) -> None:
        if not inter.acknowledged:
            log.info(
                "interaction %s (%s) not acknowledged within %.1f s",
                inter.id,
                inter.name,
                self.ack_deadline_s,
            )
            inter.fail()

    def _past_ack_deadline(self, inter: SimInteraction) -> bool:
        return self.clock.monotonic() - inter.created_at > self.ack_deadline_s

    def _acknowledge(self, inter: SimInteraction, rtype: int, data: dict[str, Any]) -> None:
        inter.response_type = rtype
        inter.response_data = data
        inter.acknowledged_at = self.clock.monotonic()
        if inter._deadline is not None:
            inter._deadline.cancel()
        inter.touch()

    # -- message mechanics (used by the REST handlers) -----------------------------------

    def _record(
        self,
        request: web.Request,
        route: str,
        body: Any,
        files: list[RecordedFile],
        status: int,
        payload: Any,
    ) -> None:
        inter: SimInteraction | None = request.get(INTERACTION)
        recorded = RecordedRequest(
            index=len(self.requests),
            method=request.method,
            path=request.path,
            route=route,
            query=dict(request.query),
            json=body,
            files=tuple(files),
            status=status,
            response=payload,
            at=self.clock.now(),
            interaction_id=inter.id if inter is not None else None,
        )
        self.requests.append(recorded)
        if status >= 400:
            log.debug(
                "emulator answered %s %s with %s: %s", request.method, request.path, status, payload
            )
        if inter is not None:
            inter.requests.append(recorded)
            inter.touch()

    def _interaction_meta(self, message: SimMessage) -> dict[str, Any] | None:
        inter = self._interactions.get(message.interaction_id or 0)
        if inter is None:
            return None
        meta: dict[str, Any] = {
            "id": str(inter.id),
            "type": inter.type,
            "user": self.state.user_payload(inter.user),
            "authorizing_integration_owners": inter.payload.get(
                "authorizing_integration_owners", {}
            ),
        }
        if inter.type == APPLICATION_COMMAND:
            meta["name"] = inter.name.lstrip("/")
            meta["command_type"] = inter.command_type
        if inter.original is not None and message is not inter.original:
            meta["original_response_message_id"] = str(inter.original.id)
        if inter.target_message is not None:
            key = (
                "interacted_message_id" if inter.type == MESSAGE_COMPONENT else "target_message_id"
            )
            meta[key] = str(inter.target_message.id)
        return meta

    def _message_json(self, message: SimMessage) -> dict[str, Any]:
        return self.state.message_payload(message, interaction_meta=self._interaction_meta(message))

    def _attachments(
        self,
        data: dict[str, Any],
        files: list[RecordedFile],
        previous: MessageRevision | None,
        channel: SimChannel,
    ) -> tuple[SimAttachment, ...]:
        if len(files) > MAX_FILES:
            raise DiscordHTTPError(
                400,
                50035,
                "Invalid Form Body",
                {
                    "files": {
                        "_errors": [
                            {
                                "code": "BASE_TYPE_MAX_LENGTH",
                                "message": "Must be 10 or fewer in length.",
                            }
                        ]
                    }
                },
            )
        if sum(len(f.data) for f in files) > ATTACHMENT_SIZE_LIMIT:
            raise DiscordHTTPError(413, 40005, "Request entity too large")
        uploads: dict[int, RecordedFile] = {}
        for position, upload in enumerate(files):
            match = _FILE_FIELD.match(upload.field_name)
            uploads[int(match.group(1)) if match else position] = upload
        existing = {a.id: a for a in previous.attachments} if previous is not None else {}

        def make(upload: RecordedFile, entry: dict[str, Any]) -> SimAttachment:
            return self.state.make_attachment(
                str(entry.get("filename") or upload.filename),
                upload.data,
                None,  # discord.py labels every part octet-stream; Discord derives the type
                channel_id=channel.id,
                description=entry.get("description"),
            )

        if data.get("attachments") is None:
            kept = list(existing.values())
            return tuple(kept + [make(u, {}) for u in uploads.values()])
        result: list[SimAttachment] = []
        used: set[int] = set()
        errors = FormErrors()
        for i, entry in enumerate(data["attachments"]):
            try:
                attachment_id = int(entry.get("id"))
            except (TypeError, ValueError):
                errors.add(f"attachments.{i}.id", "BASE_TYPE_REQUIRED", "This field is required")
                continue
            if attachment_id in existing:
                result.append(existing[attachment_id])
            elif attachment_id in uploads:
                used.add(attachment_id)
                result.append(make(uploads[attachment_id], entry))
            else:
                errors.add(f"attachments.{i}.id", "ATTACHMENT_NOT_FOUND", "Unknown attachment")
        errors.raise_if_any()
        result.extend(make(u, {}) for index, u in uploads.items() if index not in used)
        return tuple(result)

    def _revision(
        self,
        data: dict[str, Any],
        files: list[RecordedFile],
        *,
        previous: MessageRevision | None,
        channel: SimChannel,
        flags: int,
        replied_user_id: int | None = None,
    ) -> MessageRevision:
        validate_message_body(data)
        content = data["content"] if "content" in data else (previous.content if previous else "")
        embeds = data["embeds"] if "embeds" in data else (previous.embeds if previous else [])
        components = (
            data["components"]
            if "components" in data
            else (previous.components if previous else [])
        )
        attachments = self._attachments(data, files, previous, channel)
        if previous is None or "content" in data:
            allowed = data.get("allowed_mentions")
            mentions = resolve_mentions(content or "", allowed, replied_user_id=replied_user_id)
        else:
            allowed, mentions = previous.allowed_mentions, previous.mentions
        return MessageRevision(
            content=content or "",
            embeds=list(embeds or []),
            components=list(components or []),
            attachments=attachments,
            flags=flags,
            allowed_mentions=allowed,
            mentions=mentions,
            at=self.clock.now(),
            request_index=len(self.requests),
        )

    async def _create_interaction_message(
        self,
        inter: SimInteraction,
        data: dict[str, Any],
        files: list[RecordedFile],
        *,
        original: bool,
        loading: bool = False,
    ) -> SimMessage:
        flags = int(data.get("flags") or 0)
        if loading:
            revision = MessageRevision(
                content="",
                embeds=[],
                components=[],
                attachments=(),
                flags=flags,
                allowed_mentions=None,
                mentions=frozenset(),
                at=self.clock.now(),
                request_index=len(self.requests),
            )
        else:
            flags &= FLAG_EPHEMERAL | FLAG_SUPPRESS_EMBEDS | (1 << 12) | (1 << 15)
            revision = self._revision(
                data, files, previous=None, channel=inter.channel, flags=flags
            )
            require_not_empty(
                revision.content, revision.embeds, len(revision.attachments), revision.components
            )
        command_type = inter.command_type
        if original and inter.type == APPLICATION_COMMAND:
            mtype = MESSAGE_TYPE_CHAT_INPUT if command_type == 1 else MESSAGE_TYPE_CONTEXT_MENU
        else:
            mtype = MESSAGE_TYPE_DEFAULT
        message = SimMessage(
            id=self.state.ids.next(),
            channel=inter.channel,
            author=self.bot_user,
            created_at=self.clock.now(),
            revisions=[revision],
            type=mtype,
            webhook_id=self.state.application_id,
            interaction_id=inter.id,
        )
        self.state.messages[message.id] = message
        if not message.ephemeral:
            inter.channel.messages.append(message)
        if original:
            inter.original = message
        else:
            inter.followups.append(message)
        await self._emit("create", message, inter)
        return message

    async def _create_channel_message(
        self, channel: SimChannel, data: dict[str, Any], files: list[RecordedFile]
    ) -> SimMessage:
        reference_id: int | None = None
        replied_user_id: int | None = None
        ref = data.get("message_reference")
        if ref:
            referenced = self.state.messages.get(int(ref.get("message_id", 0)))
            if referenced is None or referenced.channel is not channel:
                if ref.get("fail_if_not_exists", True):
                    raise DiscordHTTPError(
                        400,
                        50035,
                        "Invalid Form Body",
                        {
                            "message_reference": {
                                "_errors": [
                                    {
                                        "code": "REPLIES_UNKNOWN_MESSAGE",
                                        "message": "Unknown message",
                                    }
                                ]
                            }
                        },
                    )
            else:
                reference_id = referenced.id
                replied_user_id = referenced.author.id
        flags = int(data.get("flags") or 0) & (FLAG_SUPPRESS_EMBEDS | (1 << 12) | (1 << 15))
        revision = self._revision(
            data,
            files,
            previous=None,
            channel=channel,
            flags=flags,
            replied_user_id=replied_user_id,
        )
        require_not_empty(
            revision.content, revision.embeds, len(revision.attachments), revision.components
        )
        message = SimMessage(
            id=self.state.ids.next(),
            channel=channel,
            author=self.bot_user,
            created_at=self.clock.now(),
            revisions=[revision],
            type=MESSAGE_TYPE_REPLY if reference_id else MESSAGE_TYPE_DEFAULT,
            reference_id=reference_id,
        )
        self.state.messages[message.id] = message
        channel.messages.append(message)
        await self._emit("create", message, None)
        return message

    async def _edit_message(
        self,
        message: SimMessage,
        data: dict[str, Any],
        files: list[RecordedFile],
        *,
        inter: SimInteraction | None = None,
        finish_loading: bool = False,
    ) -> SimMessage:
        previous = message.current
        flags = previous.flags
        if finish_loading:
            flags &= ~FLAG_LOADING
        if "flags" in data and data["flags"] is not None:
            # Only SUPPRESS_EMBEDS can be toggled on an existing message.
            flags = (flags & ~FLAG_SUPPRESS_EMBEDS) | (int(data["flags"]) & FLAG_SUPPRESS_EMBEDS)
        revision = self._revision(
            data, files, previous=previous, channel=message.channel, flags=flags
        )
        if not revision.flags & FLAG_LOADING:
            require_not_empty(
                revision.content, revision.embeds, len(revision.attachments), revision.components
            )
        message.revisions.append(revision)
        await self._emit("edit", message, inter)
        return message

    async def _delete_message(
        self, message: SimMessage, *, inter: SimInteraction | None = None
    ) -> None:
        message.deleted = True
        await self._emit("delete", message, inter)

    async def _emit(self, kind: str, message: SimMessage, inter: SimInteraction | None) -> None:
        # Wake waiters on every interaction the message belongs to (e.g. a Stop click edits the
        # /generate response: both interactions see the change).
        owners = {
            id(i): i for i in (inter, self._interactions.get(message.interaction_id or 0)) if i
        }
        for owner in owners.values():
            owner.touch()
        event = MessageEvent(kind=kind, message=message, interaction=inter)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("emulator listener failed")
        await self._gateway_message_event(kind, message)

    async def _gateway_message_event(self, kind: str, message: SimMessage) -> None:
        if message.ephemeral:
            return  # Discord never sends ephemeral messages over the gateway
        intents = self.hub.intents
        guild_id = message.channel.guild_id
        needed = INTENT_GUILD_MESSAGES if guild_id is not None else INTENT_DIRECT_MESSAGES
        if not intents & needed:
            return
        if kind == "delete":
            data: dict[str, Any] = {"id": str(message.id), "channel_id": str(message.channel.id)}
            if guild_id is not None:
                data["guild_id"] = str(guild_id)
            await self.hub.dispatch("MESSAGE_DELETE", data)
            return
        data = self.state.message_payload(
            message, gateway=True, intents=intents, interaction_meta=self._interaction_meta(message)
        )
        await self.hub.dispatch("MESSAGE_CREATE" if kind == "create" else "MESSAGE_UPDATE", data)
