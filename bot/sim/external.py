"""Run the bot exactly as ``python -m bot`` does, in its own process, against an emulator elsewhere.

    python -m bot.sim.external --api-url http://127.0.0.1:PORT -- --env-file bot.env
    python -m bot.sim.external --api-url http://127.0.0.1:PORT -- sync --env-file bot.env

Everything after ``--`` goes to ``python -m bot`` unchanged (``run``, ``sync``, ``check``,
``--env-file``...). The only difference from a real start is where discord.py connects: its REST
base and its default gateway point at the emulator (as :meth:`DiscordEmulator.patch_discord`
does in-process). So a harness can SIGKILL the bot, restart it on the same data folder, and
measure its memory, while the emulator keeps running in the harness's own process
(:mod:`bot.sim.botprocess` starts and follows such a process; ``bench/soak.py`` uses it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

API_PATH = "/api/v10"


def api_base(url: str) -> str:
    """The REST base (``http://host:port/api/v10``) from the emulator's address, with or without
    the API path."""
    url = url.rstrip("/")
    return url if url.endswith(API_PATH) else url + API_PATH


def gateway_for(url: str) -> str:
    """The emulator's gateway address (``ws://host:port/``) from its REST address."""
    parts = urlsplit(url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, "/", "", ""))


def patch_discord_urls(api_url: str, gateway_url: str) -> None:
    """Point discord.py's REST base and default gateway at an emulator, for the whole process."""
    import yarl
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

    Route.BASE = api_url
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot.sim.external",
        description="Run `python -m bot` against a Discord emulator running in another process.",
    )
    parser.add_argument(
        "--api-url",
        required=True,
        help="the emulator's address, e.g. http://127.0.0.1:8123 (the /api/v10 path is optional)",
    )
    parser.add_argument(
        "--gateway-url", help="the emulator's gateway (default: ws:// on the API's host and port)"
    )
    parser.add_argument(
        "bot_args",
        nargs=argparse.REMAINDER,
        help="after --: the arguments of `python -m bot` (default: run the bot)",
    )
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    bot_args = list(args.bot_args)
    if bot_args[:1] == ["--"]:
        bot_args = bot_args[1:]
    patch_discord_urls(api_base(args.api_url), args.gateway_url or gateway_for(args.api_url))

    from bot.__main__ import main as bot_main

    return bot_main(bot_args)


if __name__ == "__main__":
    raise SystemExit(main())
