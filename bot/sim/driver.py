"""What Discord users do, as a test or the playground drives it: run slash commands and context
menus, click buttons, choose in selects, post messages.

Each action is checked as Discord's client would check it (the command exists here, this user
may see it, the options are valid, the button is shown and enabled) and then sent to the bot as
an INTERACTION_CREATE (or MESSAGE_CREATE) event. Actions return at once; the returned
`SimInteraction` follows the bot's answer.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from bot.sim.entities import (
    ADMINISTRATOR,
    SimAttachment,
    SimChannel,
    SimGuild,
    SimMessage,
    SimUser,
    SyncedCommand,
    iter_components,
)
from bot.sim.errors import CommandNotVisible, ComponentError, SimError
from bot.sim.gateway import GatewayHub
from bot.sim.interaction import (
    APPLICATION_COMMAND,
    MESSAGE_COMPONENT,
    InteractionRegistry,
    SimInteraction,
)
from bot.sim.messages import MessageService
from bot.sim.options import OptionResolver, find_command
from bot.sim.responses import InteractionResponder
from bot.sim.state import ATTACHMENT_SIZE_LIMIT, SimState
from bot.sim.threads import ThreadService
from bot.sim.world import SimWorld


class Driver:
    """The driver API; `DiscordEmulator` is one, wired to its server.

    Default actor: ``world.member``; default place: ``world.channel``.
    """

    def __init__(
        self,
        *,
        state: SimState,
        world: SimWorld,
        hub: GatewayHub,
        registry: InteractionRegistry,
        responder: InteractionResponder,
        message_service: MessageService,
        threads: ThreadService,
        quiet_s: float,
    ) -> None:
        self.state = state
        self.world = world
        self.hub = hub
        self.registry = registry
        self.responder = responder
        self.message_service = message_service
        self.threads = threads
        self.quiet_s = quiet_s

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
        user = user or self.world.member
        channel = channel or self.world.channel
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
        return await self._dispatch(
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
        user = user or self.world.member
        resolved: dict[str, Any]
        if isinstance(target, SimMessage):
            if target.deleted or target.ephemeral:
                raise SimError("context menus only apply to visible messages")
            channel = target.channel
            ctype = 3
            # Discord always gives an app the content of a context menu's target.
            resolved = {
                "messages": {str(target.id): self.message_service.to_json(target, redact=False)}
            }
        else:
            channel = channel or self.world.channel
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
        return await self._dispatch(
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
        return await self._dispatch(
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
        return await self._dispatch(
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
        reply_to: SimMessage | None = None,
        mention_author: bool = True,
    ) -> SimMessage:
        """A user's message in a channel, thread or DM; the bot gets MESSAGE_CREATE.

        Mention the bot by writing ``emu.bot_user.mention`` in ``content``. ``reply_to`` makes
        it a reply, which pings that message's author unless ``mention_author`` is False (the
        switch in Discord's client).
        """
        guild = self.state.guild_of(channel)
        if guild is not None and author.id not in guild.members:
            raise SimError(f"{author.name} is not a member of {guild.name}")
        return await self.message_service.post_user_message(
            channel,
            author,
            content,
            attachments,
            reply_to=reply_to,
            mention_author=mention_author,
        )

    async def start_thread(
        self,
        channel: SimChannel,
        name: str,
        *,
        user: SimUser | None = None,
        message: SimMessage | None = None,
        private: bool = False,
    ) -> SimChannel:
        """A user starts a thread in ``channel`` (on ``message``, or a public or private one
        without); the bot gets THREAD_CREATE."""
        user = user or self.world.member
        if message is not None:
            return await self.threads.start_from_message(channel, message, {"name": name}, user)
        kind = 12 if private else 11
        return await self.threads.start_without_message(channel, {"name": name, "type": kind}, user)

    def _default_clicker(self, message: SimMessage) -> SimUser:
        inter = self.registry.owner_of(message)
        return inter.user if inter is not None else self.world.member

    def _check_clickable(self, message: SimMessage, user: SimUser) -> None:
        if message.deleted:
            raise ComponentError(f"{message!r} was deleted")
        if message.ephemeral:
            owner = self.registry.owner_of(message)
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

    async def _dispatch(
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
            payload["message"] = self.message_service.to_json(message)
        inter = SimInteraction(
            interaction_id=interaction_id,
            token=token,
            type=itype,
            name=name,
            user=user,
            channel=channel,
            guild=guild,
            created_at=state.clock.monotonic(),
            created_wall=state.clock.now(),
            payload=payload,
            quiet_s=self.quiet_s,
            tracked=self.registry.tracks(itype),
            target_message=message
            if message is not None
            else (target if isinstance(target, SimMessage) else None),
            command_type=int(data.get("type", 0)) if itype == APPLICATION_COMMAND else 0,
        )
        self.registry.add(inter)
        self.responder.watch(inter)
        await self.hub.dispatch("INTERACTION_CREATE", payload)
        return inter
