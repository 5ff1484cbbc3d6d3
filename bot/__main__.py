"""`python -m bot`: run the bot, check the set-up, sync commands, and operator tools."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bot.settings import Settings, SettingsError

if TYPE_CHECKING:
    from models.background import BackgroundTasks
    from models.specs import ModelSpec


class Closable(Protocol):
    async def close(self) -> None: ...


log = logging.getLogger("bot")

# Operator tools live in their own modules and are imported only when asked for.
TOOLS: dict[str, tuple[str, str]] = {
    "infer": ("bot.infer_cli", "run a model once from the shell (JSON in, JSON out)"),
    "playground": ("bot.playground", "try the bot in a terminal, no Discord account needed"),
    "finetune": ("bot.finetune_cli", "fine-tune a model from the shell"),
}

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in TOOLS:
        module_name, _ = TOOLS[args[0]]
        module = importlib.import_module(module_name)
        tool: Callable[[list[str]], int] = module.main
        return tool(args[1:])

    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="hfcord: Hugging Face models in your Discord server.",
        epilog="Operator tools: "
        + "; ".join(f"{name}: {help_}" for name, (_, help_) in TOOLS.items()),
    )
    parser.add_argument(
        "command",
        nargs="?",
        default="run",
        choices=["run", "check", "sync", *TOOLS],
        help="run the bot (default), check the set-up, or sync slash commands globally",
    )
    parser.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    parsed = parser.parse_args(args)

    try:
        settings = Settings.load(env_file=parsed.env_file)
    except SettingsError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE

    if parsed.command == "check":
        return check(settings)
    try:
        token = settings.token_value()
    except SettingsError as exc:
        print(exc.problems[0], file=sys.stderr)
        return EXIT_USAGE

    from bot.logs import setup_logging

    setup_logging(settings.log_level, secrets=settings.secrets())
    runner = _sync if parsed.command == "sync" else _run
    try:
        return asyncio.run(runner(settings, token))
    except KeyboardInterrupt:
        return 0


async def _run(settings: Settings, token: str) -> int:
    import aiohttp
    import discord

    from bot.app import open_app

    async with open_app(settings) as bot:
        # `docker stop` / systemd send SIGTERM: close cleanly (training processes are
        # stopped and their jobs reported as interrupted at the next start).
        closing = close_on_signals(bot)
        try:
            await bot.start(token)
        except discord.LoginFailure:
            log.error(
                "Discord refused the token in DISCORD_TOKEN; reset it in the developer portal."
            )
            return 1
        except discord.PrivilegedIntentsRequired:
            return 1  # HFCordBot.connect logged what to change
        except (OSError, aiohttp.ClientError) as exc:
            log.error("Could not reach Discord (%s); check this machine's network.", exc)
            return 1
        finally:
            await closing.wait()
    return 0


def close_on_signals(
    bot: Closable, signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT)
) -> BackgroundTasks:
    """Close ``bot`` when one of ``signals`` arrives; the closing task is held (and its failure
    logged) by the returned tasks, which the caller awaits before leaving."""
    from models.background import BackgroundTasks

    tasks = BackgroundTasks()
    loop = asyncio.get_running_loop()
    for signum in signals:
        loop.add_signal_handler(signum, _spawn_close, tasks, bot, f"close-on-{signum.name}")
    return tasks


def _spawn_close(tasks: BackgroundTasks, bot: Closable, name: str) -> None:
    tasks.spawn(bot.close(), name=name)


async def _sync(settings: Settings, token: str) -> int:
    import discord

    from bot.app import open_app

    # Only commands are needed: no job manager (it would claim this data folder's jobs).
    async with open_app(settings, sync_commands=False, fine_tuning=False) as bot:
        try:
            await bot.login(token)  # runs setup_hook, which loads the cogs
        except discord.LoginFailure:
            log.error(
                "Discord refused the token in DISCORD_TOKEN; reset it in the developer portal."
            )
            return 1
        synced = await bot.tree.sync()
        print(
            f"Synced {len(synced)} global command(s); Discord can take up to an hour to show them."
        )
    return 0


def check(settings: Settings) -> int:
    """Validate the set-up without connecting to Discord; one line per problem."""
    try:
        settings.token_value()
    except SettingsError as exc:
        print(exc.problems[0], file=sys.stderr)
        return EXIT_USAGE

    problems: list[str] = []
    print(f"data dir: {settings.data_dir.resolve()}")
    problems.extend(asyncio.run(_check_store(settings)))

    from models.loading import hub_offline

    offline = hub_offline()
    for task, spec in settings.model_specs().items():
        if spec.engine is not None:
            where, problem = asyncio.run(probe_engine(spec))
            print(f"{task}: {spec.model_id}: {where}")
            if problem:
                problems.append(f"{task} engine at {spec.engine.base_url}: {problem}")
            continue
        where, problem = describe_model(spec, offline=offline)
        gguf = f" ({spec.gguf_file})" if spec.gguf_file else ""
        print(f"{task}: {spec.model_id}{gguf}: {where}")
        if problem:
            problems.append(f"{task} model {spec.model_id}: {problem}")

    from bot.client import discover_extensions, extension_is_available

    for name in discover_extensions():
        if not extension_is_available(name):
            problems.append(
                f"cog {name} does not import; run `python -c 'import {name}'` to see why"
            )

    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if problems:
        return 1
    print("ok: settings, store and models look ready")
    return 0


async def _check_store(settings: Settings) -> list[str]:
    from bot.store import Store

    try:
        store = await Store.open(settings.database_path)
    except Exception as exc:  # report, don't crash: this is a diagnostic command
        return [f"could not open the database {settings.database_path}: {exc}"]
    try:
        version = await store.schema_version()
        print(f"database: {settings.database_path} (schema version {version})")
    finally:
        await store.close()
    return []


async def probe_engine(spec: ModelSpec) -> tuple[str, str | None]:
    """Ask the engine serving ``spec`` for its models: where the model is, and a problem if
    the engine does not answer or does not list it."""
    from models.tasks import task_info

    runner = task_info(spec.task).runner_class(spec.backend)(spec)
    try:
        probe = await runner.probe()
    finally:
        await runner.aclose()
    where = f"{spec.backend} engine at {probe.host}"
    if probe.models is None:
        return f"{where}, not answering", probe.problem
    listed = ", ".join(probe.models) or "no models"
    return f"{where}, answering in {probe.seconds * 1000:.0f} ms; it serves: {listed}", (
        probe.problem
    )


def describe_model(spec: ModelSpec, *, offline: bool) -> tuple[str, str | None]:
    """Where a model comes from (and whether it is on this machine), and a problem if any."""
    from models.refs import is_hub_id, is_local_ref

    ref = spec.model_id
    if is_local_ref(ref):
        path = Path(ref).expanduser()
        if not path.is_dir():
            return "local path", f"{path} is not a folder"
        needed = spec.gguf_file or "config.json"
        if not (path / needed).is_file():
            return "local path", f"{path} has no {needed}"
        return "local path, present", None
    if not is_hub_id(ref):
        return (
            "not a model reference",
            "neither a Hugging Face model id (like 'owner/name') nor a path to a local folder",
        )
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return "Hugging Face hub", None
    cached = try_to_load_from_cache(ref, spec.gguf_file or "config.json", revision=spec.revision)
    if isinstance(cached, str):
        return "Hugging Face hub, in the local cache", None
    if offline:
        return (
            "Hugging Face hub, not downloaded",
            "not in the local cache and HF_HUB_OFFLINE is set; download it once or point the "
            "setting at a local folder",
        )
    return "Hugging Face hub, downloads on first use", None


if __name__ == "__main__":
    raise SystemExit(main())
