"""Logging set-up that never writes the bot token."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

REDACTED = "[redacted]"


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then blanks out every secret (message, arguments and traceback)."""

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt, datefmt="%Y-%m-%d %H:%M:%S", style="%")
        # Short strings would redact ordinary words; real tokens are ~70 characters.
        self._secrets = sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


def setup_logging(level: str = "INFO", *, secrets: Iterable[str] = ()) -> None:
    """Log to stderr with redaction; quiet the chattiest libraries."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        RedactingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", secrets)
    )
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("discord.http").setLevel(max(logging.getLevelName(level), logging.INFO))
    logging.getLogger("discord.gateway").setLevel(logging.WARNING)
