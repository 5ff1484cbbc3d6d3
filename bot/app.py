"""The composition root: settings -> store -> registry, usage limiter, conversations ->
fine-tuning manager -> bot.

`open_app` opens each service, hands them to the bot, and closes them in reverse order; it
also starts the fine-tuning manager (cogs never start or close services).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from bot.client import HFCordBot, bot_class
from bot.contexts import ContextStore
from bot.conversations import ChatLimits, ConversationRecords, Conversations
from bot.documents.embedding import RegistryEmbedder
from bot.documents.index import DocumentIndex
from bot.documents.indexer import Indexer
from bot.settings import Settings
from bot.store import Store
from bot.usage import UsageLimiter, UsageLimits

if TYPE_CHECKING:
    from bot.finetune import FineTuneManager
    from models.registry import ModelRegistry

log = logging.getLogger(__name__)


def build_registry(settings: Settings) -> ModelRegistry:
    """The model registry for the configured models (nothing is loaded until first use)."""
    from models.registry import ModelRegistry

    return ModelRegistry(
        settings.model_specs(),
        allowed_roots=settings.allowed_model_roots,
        torch_threads=settings.torch_threads,
        max_resident_overrides=settings.max_loaded_server_models,
    )


@asynccontextmanager
async def open_app(
    settings: Settings,
    *,
    registry: ModelRegistry | None = None,
    extensions: Sequence[str] | None = None,
    sync_commands: bool = True,
    fine_tuning: bool = True,
) -> AsyncIterator[HFCordBot]:
    """Open everything the bot owns and close it all on exit; the caller starts the bot."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = await Store.open(settings.database_path)
    owns_registry = registry is None
    jobs: FineTuneManager | None = None
    index: DocumentIndex | None = None
    indexer: Indexer | None = None
    try:
        if registry is None:
            registry = build_registry(settings)
        # Documents: the index shares the database file; the indexer embeds in the background.
        index = await DocumentIndex.open(settings.database_path)
        indexer = Indexer(index, RegistryEmbedder(registry))
        await indexer.start()
        if fine_tuning:
            from bot.finetune import FineTuneManager

            jobs = FineTuneManager(settings, store)
        bot = bot_class(settings)(  # sharded when HFCORD_SHARD_COUNT is set
            settings=settings,
            store=store,
            contexts=ContextStore(
                store,
                index,
                indexer,
                max_chars=settings.context_max_chars,
                passages=settings.ask_passages,
            ),
            registry=registry,
            jobs=jobs,
            usage=UsageLimiter(UsageLimits.from_settings(settings)),
            conversations=Conversations(
                ConversationRecords(store, default_persona=settings.system_prompt),
                ChatLimits.from_settings(settings),
            ),
            extensions=extensions,
            sync_commands=sync_commands,
        )
        async with bot:
            if jobs is not None:
                from bot.finetune.reporter import DiscordJobReporter

                # Jobs a previous run left are reported once the gateway is ready.
                await jobs.start(DiscordJobReporter(bot), registry)
            yield bot
    finally:
        if jobs is not None:
            await jobs.close()  # kills training processes; the next start reports them
        if indexer is not None:
            await indexer.close()
        if owns_registry and registry is not None:
            await registry.close()
        if index is not None:
            await index.close()
        await store.close()
