"""The Bot subclass: owns settings, store, the model registry, the usage limiter and the
conversations service; loads the cogs. :class:`ShardedHFCordBot` is the same bot on discord.py's
``AutoShardedBot``: one process holding the shards ``HFCORD_SHARD_IDS`` of ``HFCORD_SHARD_COUNT``
(see :func:`bot_class`)."""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

import cogs
from bot.contexts import ContextStore
from bot.conversations import ChatLimits, ConversationRecords, Conversations
from bot.errors import HFCordTree
from bot.reply import NO_MENTIONS
from bot.settings import Settings
from bot.store import Store
from bot.usage import UsageLimiter, UsageLimits

if TYPE_CHECKING:
    from bot.finetune import FineTuneManager
    from models.registry import ModelRegistry

log = logging.getLogger(__name__)

# The one line an operator sees when Discord refuses the intent (gateway close code 4014).
INTENT_REFUSED = (
    "Discord refused the Message Content intent (gateway close 4014): switch it on for this "
    "application in the Developer Portal (Bot > Privileged Gateway Intents > Message Content "
    "Intent), or set HFCORD_MESSAGE_CONTENT_INTENT=false."
)


def discover_extensions() -> list[str]:
    """Every module in `cogs/` (one per task), in name order."""
    return sorted(
        f"{cogs.__name__}.{info.name}"
        for info in pkgutil.iter_modules(cogs.__path__)
        if not info.name.startswith("_")
    )


class HFCordBot(commands.Bot):
    """hfcord's bot; cogs reach shared objects through its typed attributes."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        contexts: ContextStore,
        registry: ModelRegistry | None = None,
        jobs: FineTuneManager | None = None,
        usage: UsageLimiter | None = None,
        conversations: Conversations | None = None,
        extensions: Sequence[str] | None = None,
        sync_commands: bool = True,
    ) -> None:
        # Slash commands, context menus (interactions carry the message they target) and
        # conversations: message events arrive with the default intents, their content only for
        # messages that mention the bot, replies that ping it and DMs unless the privileged
        # Message Content intent is on (HFCORD_MESSAGE_CONTENT_INTENT; README, "Conversations").
        # hfcord has no voice features, so discord.py's warnings about missing voice libraries
        # would only alarm operators.
        intents = discord.Intents.default()
        intents.message_content = settings.message_content_intent
        intents.voice_states = False
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            tree_cls=HFCordTree,
            allowed_mentions=NO_MENTIONS,
            help_command=None,
            **self._client_options(),
        )
        self.settings = settings
        self.store = store
        self.contexts = contexts
        self.registry = registry
        self.jobs = jobs  # started and closed by bot.app.open_app
        # Every model request of a user goes through it (fair use, bot/usage.py).
        self.usage = usage or UsageLimiter(UsageLimits.from_settings(settings))
        # Chat threads, mentions, replies and personas (bot/conversations/).
        self.conversations = conversations or Conversations(
            ConversationRecords(store, default_persona=settings.system_prompt),
            ChatLimits.from_settings(settings),
        )
        self.extension_names = list(extensions) if extensions is not None else None
        self.sync_commands = sync_commands
        self.loaded_extensions: list[str] = []
        self.failed_extensions: dict[str, str] = {}

    def _client_options(self) -> dict[str, Any]:
        """Extra discord.py client options (the sharded bot's shards)."""
        return {}

    async def close(self) -> None:
        # discord.py 2.7 waits up to 2 s after READY for the guilds before dispatching
        # on_ready, and its close() leaves that task pending: closed inside that window, the
        # task wakes on a client without a loop and logs a traceback. Cancel it first.
        ready = getattr(self._connection, "_ready_task", None)
        if ready is not None and not ready.done():
            ready.cancel()
        await super().close()

    async def setup_hook(self) -> None:
        names = self.extension_names if self.extension_names is not None else discover_extensions()
        for name in names:
            try:
                await self.load_extension(name)
            except Exception as exc:
                # One broken cog must not take the others down.
                cause = exc.__cause__ or exc
                self.failed_extensions[name] = f"{type(cause).__name__}: {cause}"
                log.exception("could not load %s; continuing without it", name)
            else:
                self.loaded_extensions.append(name)
        log.info(
            "loaded %d cog(s): %s", len(self.loaded_extensions), ", ".join(self.loaded_extensions)
        )
        if self.sync_commands and self.settings.dev_guild_id is not None:
            guild = discord.Object(id=self.settings.dev_guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d command(s) to dev guild %s", len(synced), guild.id)

    async def connect(self, *, reconnect: bool = True) -> None:
        try:
            await super().connect(reconnect=reconnect)
        except discord.PrivilegedIntentsRequired:
            log.error(INTENT_REFUSED)
            raise

    async def on_message(self, message: discord.Message, /) -> None:
        """No prefix commands: messages are the conversations cog's (cogs/chat.py), which
        listens for them itself."""

    async def on_ready(self) -> None:
        assert self.user is not None
        log.info("logged in as %s (%s) in %d server(s)", self.user, self.user.id, len(self.guilds))


class ShardedHFCordBot(HFCordBot, commands.AutoShardedBot):
    """hfcord over several gateway connections (shards), for bots in many servers.

    Discord sends each server's events to shard ``(guild_id >> 22) % shard_count`` (direct
    messages to shard 0); this process connects the shards ``settings.shard_ids`` (all when
    unset) of ``settings.shard_count``, so several processes can split them. Everything else
    (cogs, services, replies over REST) is :class:`HFCordBot`'s.
    """

    def __init__(self, *, settings: Settings, **kwargs: Any) -> None:
        if settings.shard_count is None:
            raise ValueError("a sharded bot needs settings.shard_count")
        self._shard_options = {
            "shard_count": settings.shard_count,
            "shard_ids": list(settings.shard_ids) if settings.shard_ids is not None else None,
        }
        super().__init__(settings=settings, **kwargs)

    def _client_options(self) -> dict[str, Any]:
        return dict(self._shard_options)

    async def on_shard_ready(self, shard_id: int) -> None:
        log.info("shard %d of %s is ready", shard_id, self.shard_count)


def bot_class(settings: Settings) -> type[HFCordBot]:
    """The bot class for ``settings``: sharded when HFCORD_SHARD_COUNT is set."""
    return ShardedHFCordBot if settings.sharded else HFCordBot


def extension_is_available(name: str) -> bool:
    """Whether a cog module imports (used by `python -m bot check`)."""
    try:
        importlib.import_module(name)
    except Exception:
        return False
    return True
