"""Functions :func:`bot.isolated.run_isolated` runs in a child process in the tests."""

from __future__ import annotations

import os
import time

from bot.isolated import Refused


def shout(data: bytes, suffix: str) -> dict[str, object]:
    return {"text": data.decode().upper() + suffix, "environment": sorted(os.environ)}


def refuse(data: bytes) -> str:
    raise Refused("That file has no rows.")


def crash(data: bytes) -> str:
    raise KeyError("a bug")


def hang(data: bytes) -> str:
    time.sleep(60)
    return "never"


def hoard(data: bytes) -> str:
    blocks = [bytearray(64 << 20) for _ in range(64)]  # 4 GiB
    return str(len(blocks))
