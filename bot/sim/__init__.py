"""A loopback Discord emulator: REST + gateway on 127.0.0.1 for end-to-end tests and the playground.

    async with DiscordEmulator() as emu:
        with emu.patch_discord():                       # discord.py now talks to emu
            async with connected(emu, bot, sync_global=True):   # bot.sim.harness
                inter = await emu.slash("context set", {"text": "..."}, user=emu.member)
                await inter.final()                     # deferred, answered, handler done
                assert "Context set" in inter.text
                msg = await emu.post_message(emu.channel, emu.admin, "I love it")
                menu = await emu.context_menu("Analyze sentiment", msg)
                gen = await emu.slash("generate", {"prompt": "Hi", "max_tokens": 20})
                await gen.wait_until(lambda i: bool(i.original and i.original.buttons))
                await emu.click(gen.original, label="Stop")

Conversations: `emu.post_message(channel, user, f"{emu.bot_user.mention} hi", reply_to=msg)`
(a reply pings its author unless `mention_author=False`), in a channel, thread or `emu.dm(user)`;
`emu.start_thread(channel, name, message=msg)`; the bot's REST history, single fetches, threads
(from a message or without one, THREAD_CREATE) and reactions. The Message Content rule:
content is empty in events and fetches unless the intent is on (`privileged_intents`: the
portal's switches; identifying with one it lacks closes the gateway with 4014), the message
mentions the bot, or it is a DM.

World: `emu.admin` (guild owner, Admins role), `emu.member`, `emu.guild` with `emu.channel`
(#general) and `emu.thread`, `emu.other_guild` / `emu.other_channel`, `emu.dm(user)` (all also
in `emu.world`). `save_world(path, emu.state, emu.world)` and
`DiscordEmulator(saved_world=read_world(path))` (bot.sim.worldfile) bring a world back, ids kept.
Sharding: bots IDENTIFY with ``[shard_id, shard_count]`` and several connect at once; each
server's events go to shard ``(guild_id >> 22) % shard_count`` (DMs to shard 0);
``emu.add_guild(name, shard=(id, count))`` makes a server on a given shard, ``emu.hub.shards``
lists the connected ones.
Records: `emu.requests`, `emu.messages` (every revision kept), `emu.interactions`,
`emu.interaction_for(message)`, `emu.synced_commands`, `emu.mention_leaks()`,
`emu.unhandled_requests`. Discord rules: 3 s ack deadline, 2,000-char content, 15-minute tokens
(`emu.advance(seconds)`), rate-limit headers, `emu.force_rate_limit`.
"""

from __future__ import annotations

from bot.sim.clock import SimClock
from bot.sim.emulator import DiscordEmulator
from bot.sim.entities import (
    MessageRevision,
    RecordedFile,
    RecordedRequest,
    SimAttachment,
    SimButton,
    SimChannel,
    SimGuild,
    SimMessage,
    SimRole,
    SimUser,
    SyncedCommand,
)
from bot.sim.errors import (
    CommandNotFound,
    CommandNotVisible,
    ComponentError,
    InteractionFailed,
    InteractionTimeout,
    OptionError,
    SimError,
)
from bot.sim.interaction import SimInteraction
from bot.sim.messages import MessageEvent
from bot.sim.ratelimit import RateLimitPolicy
from bot.sim.world import SimWorld

__all__ = [
    "CommandNotFound",
    "CommandNotVisible",
    "ComponentError",
    "DiscordEmulator",
    "InteractionFailed",
    "InteractionTimeout",
    "MessageEvent",
    "MessageRevision",
    "OptionError",
    "RateLimitPolicy",
    "RecordedFile",
    "RecordedRequest",
    "SimAttachment",
    "SimButton",
    "SimChannel",
    "SimClock",
    "SimError",
    "SimGuild",
    "SimInteraction",
    "SimMessage",
    "SimRole",
    "SimUser",
    "SimWorld",
    "SyncedCommand",
]
