"""Follow a discord.py client's handlers, so `SimInteraction.final()` knows when a command's
callback (or a view's) has returned rather than guessing from a quiet period.

This wraps discord.py internals (the CommandTree's ``_call`` and ``_dispatch_error``, the view
store's ``dispatch_view`` and ``add_task``) without changing what they do. Besides
``harness.connected`` (which shortens ``guild_ready_timeout``), the only place the emulator
touches a client's private members.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bot.sim.interaction import InteractionRegistry


def track_handlers(client: Any, interactions: InteractionRegistry) -> None:
    """Report to ``interactions`` when the client's handler for each interaction finishes."""
    from discord import app_commands

    tree = getattr(client, "tree", None) or getattr(client._connection, "_command_tree", None)
    if tree is not None:
        _track_commands(tree, interactions, app_commands.AppCommandError)
        interactions.tracking_commands = True
    _track_views(client._connection._view_store, interactions)
    interactions.tracking_views = True


def _track_commands(
    tree: Any, interactions: InteractionRegistry, command_error: type[BaseException]
) -> None:
    orig_call = tree._call
    orig_error = tree._dispatch_error

    async def call(interaction: Any) -> None:
        try:
            await orig_call(interaction)
        except command_error:
            raise  # finished once _dispatch_error has run
        except BaseException:
            interactions.handler_finished(interaction.id)
            raise
        interactions.handler_finished(interaction.id)

    async def dispatch_error(interaction: Any, error: Any) -> None:
        try:
            await orig_error(interaction, error)
        finally:
            interactions.handler_finished(interaction.id)

    tree._call = call
    tree._dispatch_error = dispatch_error


def _track_views(store: Any, interactions: InteractionRegistry) -> None:
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
            interactions.handler_finished(interaction.id)  # no view took it

    def add_task(task: asyncio.Task[None]) -> None:
        orig_add_task(task)
        if dispatching:
            iid = dispatching[-1]
            started.add(iid)
            task.add_done_callback(lambda _t: interactions.handler_finished(iid))

    store.dispatch_view = dispatch_view
    store.add_task = add_task
