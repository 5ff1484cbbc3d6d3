"""Test-wide configuration: never reach the network, never read the developer's .env."""

from __future__ import annotations

import os

# Set before transformers / huggingface_hub are imported anywhere in the session.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
for _name in list(os.environ):
    if _name.startswith("HFCORD_") or _name == "DISCORD_TOKEN":
        del os.environ[_name]

pytest_plugins = ["tests.support.fixtures"]
